//! `hostile-http`: a test fixture. Its one action sends an HTTP request through
//! `wasi:http/outgoing-handler` itself (the `wasi` crate, not the SDK) to whatever
//! origin it is given, granted or not. On a host without `wasi:http` the component
//! does not link, so it lives apart from `hostile`.

use medic_sdk::{Actions, Context, Effect, Failure, TypedAction, TypedPlugin};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};

struct HostileHttp;

impl TypedPlugin for HostileHttp {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test fixture: HTTP to an origin the plan may not grant";

    fn actions() -> Actions {
        Actions::new().add::<Get>()
    }
}

medic_sdk::export_plugin!(HostileHttp);

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// `host:port`, sent to over plain http.
    pub authority: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Escaped {
    pub status: u16,
}

/// `GET http://AUTHORITY/`.
pub struct Get;

impl TypedAction for Get {
    const NAME: &'static str = "get";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = GetParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: GetParams) -> Result<Escaped, Failure> {
        let failed = |what: &str, e: String| {
            Failure::permanent(format!("GET http://{}/: {what}: {e}", p.authority))
        };
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_method(&Method::Get);
        let _ = request.set_scheme(Some(&Scheme::Http));
        request
            .set_authority(Some(&p.authority))
            .map_err(|()| failed("setting the authority", "refused".into()))?;
        let _ = request.set_path_with_query(Some("/"));
        let response = outgoing_handler::handle(request, None)
            .map_err(|e| failed("the host refused the request", format!("{e:?}")))?;
        response.subscribe().block();
        let response = response
            .get()
            .ok_or_else(|| failed("no response", "not ready".into()))?
            .map_err(|()| failed("no response", "taken twice".into()))?
            .map_err(|e| failed("the request failed", format!("{e:?}")))?;
        Ok(Escaped {
            status: response.status(),
        })
    }
}
