//! Sign up, sign in, sign out: server functions and their pages.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::components::{
    built_once::built_once,
    notice::{error_of, FormError},
};
use crate::model::CustomerView;

#[server(endpoint = "current_customer", output = crate::codec::JsonText)]
pub async fn current_customer() -> Result<Option<CustomerView>, ServerFnError> {
    use crate::session;
    let Some(id) = session::customer_id().await? else {
        return Ok(None);
    };
    let backend = session::backend()?;
    let customer = backend
        .store
        .customer_by_id(&id)
        .await
        .map_err(crate::backend::AppError::from)?;
    Ok(customer.map(|c| CustomerView {
        name: c.name,
        email: c.email,
    }))
}

/// Whether the sign-in page shows the demo credentials (development only).
#[server(endpoint = "demo_credentials", output = crate::codec::JsonText)]
pub async fn demo_credentials() -> Result<Option<(String, String)>, ServerFnError> {
    use crate::backend::accounts::{DEMO_EMAIL, DEMO_PASSWORD};
    let backend = crate::session::backend()?;
    Ok(backend
        .settings
        .dev_mode
        .then(|| (DEMO_EMAIL.to_owned(), DEMO_PASSWORD.to_owned())))
}

#[server(endpoint = "sign_up", output = crate::codec::JsonText)]
pub async fn sign_up(name: String, email: String, password: String) -> Result<(), ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let backend = session::backend()?;
    let id = match backend
        .sign_up(&name, &email, password, session::client_ip())
        .await
    {
        Ok(id) => id,
        Err(e) => return Err(refuse(e, "/sign-up").await),
    };
    session::sign_in(&id).await?;
    leptos_axum::redirect("/account/cards");
    Ok(())
}

#[server(endpoint = "sign_in", output = crate::codec::JsonText)]
pub async fn sign_in(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let backend = session::backend()?;
    let id = match backend
        .sign_in(&email, &password, session::client_ip())
        .await
    {
        Ok(id) => id,
        Err(e) => {
            let back = match next.as_deref() {
                Some(next) => format!(
                    "/sign-in?next={}",
                    encode_query_value(&safe_next(Some(next)))
                ),
                None => "/sign-in".to_owned(),
            };
            return Err(refuse(e, &back).await);
        }
    };
    session::sign_in(&id).await?;
    leptos_axum::redirect(&safe_next(next.as_deref()));
    Ok(())
}

#[server(endpoint = "sign_out", output = crate::codec::JsonText)]
pub async fn sign_out() -> Result<(), ServerFnError> {
    crate::session::sign_out().await?;
    leptos_axum::redirect("/sign-in");
    Ok(())
}

/// Where to go after signing in: a path on this site, never anywhere else (an open redirect
/// would let a phishing link bounce through us). `next` is resolved the way a browser resolves it
/// (tabs and newlines stripped, backslashes read as slashes, dot segments and percent-encoding
/// normalised) against our own origin; anything that lands on another origin, or that a browser
/// would read as another host (`//host`), falls back to the cards page.
#[cfg(feature = "ssr")]
pub fn safe_next(next: Option<&str>) -> String {
    const DEFAULT: &str = "/account/cards";
    let Some(next) = next.filter(|n| !n.is_empty()) else {
        return DEFAULT.to_owned();
    };
    // A header value cannot hold control characters, and no path of ours has one.
    if next.chars().any(char::is_control) || !next.starts_with('/') {
        return DEFAULT.to_owned();
    }
    let base = url::Url::parse("https://this-site.invalid/").expect("static URL parses");
    match base.join(next) {
        Ok(target) if target.origin() == base.origin() && !target.path().starts_with("//") => {
            let mut local = target.path().to_owned();
            if let Some(query) = target.query() {
                local.push('?');
                local.push_str(query);
            }
            local
        }
        _ => DEFAULT.to_owned(),
    }
}

#[cfg(all(test, feature = "ssr"))]
mod safe_next_tests {
    use super::safe_next;

    #[test]
    fn local_paths_are_kept() {
        assert_eq!(safe_next(Some("/account/cards")), "/account/cards");
        assert_eq!(safe_next(Some("/account/cards?x=1")), "/account/cards?x=1");
        assert_eq!(safe_next(Some("/a/../account/cards")), "/account/cards");
        assert_eq!(safe_next(None), "/account/cards");
        assert_eq!(safe_next(Some("")), "/account/cards");
    }

    #[test]
    fn anything_off_site_falls_back() {
        for evil in [
            "//evil.example/",
            "/\\evil.example/",
            "\\evil.example",
            "/\tevil.example",
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r\n/evil.example/",
            "https://evil.example/",
            "http:evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "evil.example",
            "/./\\evil.example",
            "/.//evil.example/",
            "/%2F%2Fevil.example",
            "///evil.example",
            "\t//evil.example",
            " //evil.example",
        ] {
            let got = safe_next(Some(evil));
            // Either the default, or a path on this site that no browser reads as another host.
            assert!(
                got == "/account/cards" || (got.starts_with('/') && !got.starts_with("/\\")),
                "{evil:?} -> {got:?}"
            );
            assert!(!got.starts_with("//"), "{evil:?} -> {got:?}");
            assert!(!got.contains(char::is_control), "{evil:?} -> {got:?}");
        }
    }

    #[test]
    fn the_reported_redirect_is_refused() {
        // `/sign-in?next=%2F%09%2Fevil.example%2F`, form-decoded: "/\t/evil.example/".
        assert_eq!(safe_next(Some("/\t/evil.example/")), "/account/cards");
        assert_eq!(safe_next(Some("/\n/evil.example/")), "/account/cards");
    }
}

/// Percent-encodes a query value (a local path here).
#[cfg(feature = "ssr")]
fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    tell_other_tabs_on_success(action);
    let demo = Resource::new(|| (), |_| demo_credentials());
    let next = move || use_query_map().with(|q| q.get("next")).unwrap_or_default();
    let error = error_of(move || action.value().get());

    view! {
        <Title text="Sign in"/>
        <h1 tabindex="-1">"Sign in"</h1>
        <ActionForm action=action attr:class="stack" attr:aria-label="Sign in">
            // An attribute, not a property: a form posted without JavaScript must carry it too.
            <input type="hidden" name="next" value=next/>
            <label for="email">"Email"</label>
            <input id="email" type="email" name="email" autocomplete="email" required/>
            <label for="password">"Password"</label>
            <input id="password" type="password" name="password" autocomplete="current-password" required/>
            <FormError message=error/>
            <button class="primary" type="submit" disabled=move || action.pending().get()>
                {move || if action.pending().get() { "Signing in…" } else { "Sign in" }}
            </button>
        </ActionForm>
        <p>"New here? "<a href="/sign-up">"Create an account"</a>"."</p>
        <Suspense>
            {move || {
                demo.get()
                    .and_then(Result::ok)
                    .flatten()
                    .map(|(email, password)| {
                        view! {
                            <aside class="demo-hint" aria-label="Development demo account">
                                <p>
                                    "Development mode: sign in as "<code>{email}</code>
                                    " with password "<code>{password}</code>"."
                                </p>
                            </aside>
                        }
                    })
            }}
        </Suspense>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    tell_other_tabs_on_success(action);
    let error = error_of(move || action.value().get());
    view! {
        <Title text="Create an account"/>
        <h1 tabindex="-1">"Create an account"</h1>
        <ActionForm action=action attr:class="stack" attr:aria-label="Create an account">
            <label for="name">"Name"</label>
            <input id="name" name="name" autocomplete="name" required maxlength="100"/>
            <label for="email">"Email"</label>
            <input id="email" type="email" name="email" autocomplete="email" required/>
            <label for="password">"Password"</label>
            <input id="password" type="password" name="password" autocomplete="new-password" required minlength="8" aria-describedby="password-hint"/>
            <p id="password-hint" class="hint">"At least 8 characters."</p>
            <FormError message=error/>
            <button class="primary" type="submit" disabled=move || action.pending().get()>
                {move || if action.pending().get() { "Creating account…" } else { "Create account" }}
            </button>
        </ActionForm>
        <p>"Already have an account? "<a href="/sign-in">"Sign in"</a>"."</p>
    }
}

/// Once `action` (sign in, up or out) succeeds, other open tabs hear that the customer changed.
fn tell_other_tabs_on_success<A>(action: ServerAction<A>)
where
    A: leptos::server_fn::ServerFn<Output = (), Error = ServerFnError>
        + Send
        + Sync
        + Clone
        + 'static,
{
    Effect::new(move |_| {
        if let Some(Ok(())) = action.value().get() {
            crate::live::session_changed();
        }
    });
}

/// Header part: who is signed in, and a sign-out button (a form, so it works without WASM).
#[component]
pub fn AccountMenu() -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    tell_other_tabs_on_success(sign_out);
    // Refetched on every navigation (signing in or up moves to another page client-side) and
    // when another tab signs in or out.
    let location = leptos_router::hooks::use_location();
    let elsewhere = RwSignal::new(0u32);
    crate::live::on_session_change(move || elsewhere.update(|n| *n += 1));
    let customer = Resource::new(
        move || {
            (
                sign_out.version().get(),
                location.pathname.get(),
                elsewhere.get(),
            )
        },
        |_| current_customer(),
    );
    view! {
        <Suspense>
            // The read registers the resource with the boundary; the menu itself is built only
            // to render it (see `built_once`).
            {move || {
                customer.get().map(|c| built_once(move || match c {
                    Ok(Some(c)) => view! {
                        <span class="who">{c.name}</span>
                        <ActionForm action=sign_out attr:class="inline">
                            <button type="submit" class="link-button">"Sign out"</button>
                        </ActionForm>
                    }.into_any(),
                    _ => view! { <a href="/sign-in">"Sign in"</a> }.into_any(),
                }))
            }}
        </Suspense>
    }
}
