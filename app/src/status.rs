//! Which Jetpay the server talks to. Customers see a "Test mode" badge while the embedded
//! sandbox stands in for Jetpay, and nothing when a real Jetpay host is configured.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JetpayConnection {
    /// `"sandbox"` when the embedded stand-in runs, `"jetpay"` for a configured host.
    pub jetpay_mode: String,
    pub jetpay_origin: String,
    pub version: String,
}

/// What the server knows about its Jetpay connection. Provided by the server as context.
#[server(endpoint = "server_info", output = crate::codec::JsonText)]
pub async fn server_info() -> Result<JetpayConnection, ServerFnError> {
    use_context::<JetpayConnection>()
        .ok_or_else(|| ServerFnError::new("server info not configured"))
}

#[component]
pub fn JetpayStatus() -> impl IntoView {
    let info = Resource::new(|| (), |_| server_info());
    view! {
        <Suspense>
            {move || {
                info.get()
                    .and_then(Result::ok)
                    .filter(|info| info.jetpay_mode == "sandbox")
                    .map(|_| view! {
                        <p class="test-mode">
                            <span class="badge test" data-testid="jetpay-mode">"Test mode"</span>
                            " Cards added here go to a test payment service; no real card is charged."
                        </p>
                    })
            }}
        </Suspense>
    }
}
