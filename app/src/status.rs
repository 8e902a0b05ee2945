//! Which Jetpay the server talks to, shown in the footer so a developer always knows whether the
//! cards they add go to the local sandbox or to a real Jetpay host.

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
#[server(endpoint = "server_info")]
pub async fn server_info() -> Result<JetpayConnection, ServerFnError> {
    use_context::<JetpayConnection>()
        .ok_or_else(|| ServerFnError::new("server info not configured"))
}

#[component]
pub fn JetpayStatus() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let info = Resource::new(move || refresh.get(), |_| server_info());

    view! {
        <p class="jetpay-status">
            <Suspense fallback=|| "Checking payment connection…">
                {move || {
                    info.get()
                        .map(|result| match result {
                            Ok(info) => {
                                let label = if info.jetpay_mode == "sandbox" {
                                    format!("Payments: Jetpay sandbox at {}", info.jetpay_origin)
                                } else {
                                    format!("Payments: Jetpay at {}", info.jetpay_origin)
                                };
                                view! { <span data-testid="jetpay-mode">{label}</span> }.into_any()
                            }
                            Err(_) => {
                                view! { <span>"Payment connection unknown."</span> }.into_any()
                            }
                        })
                }}
            </Suspense>
            " "
            <button type="button" class="link-button" on:click=move |_| refresh.update(|n| *n += 1)>
                "Check again"
            </button>
        </p>
    }
}
