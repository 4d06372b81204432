//! The few HTML pages a user sees: login, consent, and errors that must not redirect.
//! Every value is HTML-escaped; every page refuses to be framed.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.3rem}.box{border:1px solid #ccc;border-radius:8px;padding:1rem 1.2rem}\
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:4px}.warn{color:#8a4b00}\
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.6rem}input{font-size:1rem;padding:.3rem;width:100%;margin:.2rem 0 .8rem}";

/// Wraps a body in a page with anti-framing and no-cache headers.
pub fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Content-Type", "text/html; charset=utf-8"))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
             <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>{body}</body></html>",
            text(title)
        ))
}

/// An authorization error shown to the user because the redirect URI is not (yet) trusted.
pub fn error_page(error: &str, description: &str) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        "Authorization error",
        &format!(
            "<h1>This authorization request cannot be completed</h1><div class=\"box\"><p><code>{}</code></p><p>{}</p></div>\
             <p>You were not redirected back to the application because the request could not be verified.</p>",
            text(error),
            text(description)
        ),
    )
}

/// The login form of the local provider.
pub fn login_form(request_id: &str, csrf: &str, client_name: &str, failed: bool) -> HttpResponse {
    let notice = if failed {
        "<p class=\"warn\">Wrong username or password.</p>"
    } else {
        ""
    };
    page(
        if failed {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "Sign in",
        &format!(
            "<h1>Sign in to continue to {}</h1>{notice}<form method=\"post\" action=\"login\" class=\"box\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Username<input name=\"username\" autocomplete=\"username\" required autofocus></label>\
             <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>",
            text(client_name),
            attr(request_id),
            attr(csrf)
        ),
    )
}

/// What the consent screen shows.
pub struct ConsentView<'a> {
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    pub redirect_uri: &'a str,
    pub redirect_is_loopback: bool,
    pub scopes: Vec<&'a str>,
    pub resource: &'a str,
    /// Before a delegated login: the upstream provider's name and the scopes it is asked for.
    pub upstream: Option<(&'a str, &'a [String])>,
    /// A device authorization (RFC 8628): nothing is redirected; the page warns against codes
    /// received from someone else (§5.4 remote phishing).
    pub device: bool,
}

/// The consent screen: names the client, its redirect host, the scopes and the resource.
pub fn consent_form(v: &ConsentView<'_>) -> HttpResponse {
    let scopes: String = v
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", text(s)))
        .collect();
    let loopback = if v.redirect_is_loopback {
        "<p class=\"warn\">This application receives the authorization on your own computer (a local address). \
         Only continue if you started this from an application you trust.</p>"
    } else {
        ""
    };
    let upstream = match v.upstream {
        Some((name, scopes)) => format!(
            "<p>If you allow, you will sign in with <strong>{}</strong>, which will be asked for:</p><ul>{}</ul>",
            text(name),
            scopes
                .iter()
                .map(|s| format!("<li><code>{}</code></li>", text(s)))
                .collect::<String>()
        ),
        None => String::new(),
    };
    let destination = if v.device {
        "<p class=\"warn\">A device is asking for access with the code you entered. Only allow it if you \
         typed that code from the screen of your own device just now, not one you were sent by someone \
         else.</p>"
            .to_owned()
    } else {
        format!(
            "<p>After you decide, you will be sent to <strong>{}</strong> (<code>{}</code>).</p>{loopback}",
            text(v.redirect_host),
            text(v.redirect_uri)
        )
    };
    page(
        StatusCode::OK,
        "Authorize access",
        &format!(
            "<h1><strong>{}</strong> wants to access your account</h1><div class=\"box\">\
             <p>Client: <code>{}</code></p>{destination}\
             <p>Resource: <code>{}</code></p><p>Permissions:</p><ul>{scopes}</ul>{upstream}</div>\
             <form method=\"post\" action=\"consent\"><input type=\"hidden\" name=\"request\" value=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><p>\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form>",
            text(v.client_name),
            text(v.client_id),
            text(v.resource),
            attr(v.request_id),
            attr(v.csrf)
        ),
    )
}

/// A plain message page (connect flow outcomes and refusals).
pub fn message(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1><div class=\"box\"><p>{}</p></div>",
            text(title),
            text(message)
        ),
    )
}

/// The local provider's login form inside a connect link (posts back to the link itself).
pub fn connect_login_form(csrf: &str, provider: &str, failed: bool) -> HttpResponse {
    let notice = if failed {
        "<p class=\"warn\">Wrong username or password.</p>"
    } else {
        ""
    };
    page(
        if failed {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "Sign in",
        &format!(
            "<h1>Sign in to connect {}</h1>{notice}<form method=\"post\" class=\"box\">\
             <input type=\"hidden\" name=\"step\" value=\"login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Username<input name=\"username\" autocomplete=\"username\" required autofocus></label>\
             <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>",
            text(provider),
            attr(csrf)
        ),
    )
}

/// The connect confirmation: which account, which provider, which scopes.
pub fn connect_confirm(
    action: &str,
    csrf: &str,
    account: &str,
    provider: &str,
    scopes: &[String],
) -> HttpResponse {
    let scopes: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", text(s)))
        .collect();
    page(
        StatusCode::OK,
        "Connect an account",
        &format!(
            "<h1>Connect <strong>{}</strong> to your account</h1><div class=\"box\">\
             <p>Signed in as <strong>{}</strong>.</p>\
             <p>Your assistant's tools will act as you at {} with these permissions:</p><ul>{scopes}</ul>\
             <p class=\"warn\">Only continue if you asked your assistant to connect {} just now.</p></div>\
             <form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><p>\
             <button type=\"submit\" name=\"step\" value=\"confirm\">Connect</button>\
             <button type=\"submit\" name=\"step\" value=\"cancel\">Cancel</button></p></form>",
            text(provider),
            text(account),
            text(provider),
            text(provider),
            attr(action),
            attr(csrf)
        ),
    )
}

/// The verification page of the device flow (RFC 8628 §3.3): a user code to type, or one that
/// arrived in `verification_uri_complete`, prefilled but still only sent by the user's click
/// (§5.4: a link alone never authorizes anything).
pub fn device_entry_form(csrf: &str, prefill: &str, notice: Option<&str>) -> HttpResponse {
    let notice = notice
        .map(|n| format!("<p class=\"warn\">{}</p>", text(n)))
        .unwrap_or_default();
    page(
        if notice.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        },
        "Connect a device",
        &format!(
            "<h1>Connect a device</h1>{notice}<form method=\"post\" action=\"device\" class=\"box\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Enter the code shown on your device<input name=\"user_code\" value=\"{}\" \
             autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" required autofocus></label>\
             <p>Only enter a code that your own device shows you. Never enter a code someone sent you.</p>\
             <button type=\"submit\">Continue</button></form>",
            attr(csrf),
            attr(prefill)
        ),
    )
}
