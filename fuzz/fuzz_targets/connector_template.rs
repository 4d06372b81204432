#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_service::fuzzing::connector_template_bytes(data));
