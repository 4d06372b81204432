use crate::harness::*;

#[tokio::test]
async fn metadata_and_code_flow() {
    let s = TestServer::start().await;
    let meta: serde_json::Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.issuer());
    assert_eq!(meta["issuer"].as_str().unwrap(), s.base);
    let (_client, tokens) = s.login(None).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let intro = s.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["aud"], RESOURCE);
    let g = s
        .grpc_introspect(tokens["access_token"].as_str().unwrap(), RESOURCE)
        .await;
    assert!(g.active);
    s.stop().await;
}
