//! Attacks through the browser-facing side: session fixation, brute-force sign-in, other
//! customers' card ids (IDOR), cross-origin posts, and the security headers on every response.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    spawn_app, spawn_app_unregistered, spawn_app_with, spawn_prod_app, Customer, TestApp,
};
use jetpay::test_util::eventually;
use reqwest::{header::HeaderMap, StatusCode};

const SESSION_COOKIE: &str = "saved_cards_session";
const PASSWORD: &str = "a long password";
const SUCCESS: &str = "4242424242424242";
const DECLINE: &str = "4000000000000002";

/// Every server function the app registers.
const ENDPOINTS: [&str; 10] = [
    "current_customer",
    "demo_credentials",
    "sign_up",
    "sign_in",
    "sign_out",
    "list_cards",
    "add_card",
    "make_default_card",
    "remove_card",
    "server_info",
];

fn raw_client() -> reqwest::Client {
    common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
            .map(str::to_owned)
    }

    fn session_id(&self) -> Option<String> {
        self.session_cookie()
            .map(|c| c.split(';').next().unwrap()[SESSION_COOKIE.len() + 1..].to_owned())
    }
}

/// A server function call with an explicit session cookie (no cookie jar).
async fn call(
    app: &TestApp,
    session: Option<&str>,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Answer {
    let mut request = raw_client()
        .post(app.url(&format!("/api/{endpoint}")))
        .form(form);
    if let Some(id) = session {
        request = request.header("cookie", format!("{SESSION_COOKIE}={id}"));
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// The email of whoever `session` is signed in as.
async fn whoami(app: &TestApp, session: &str) -> Option<String> {
    let answer = call(app, Some(session), "current_customer", &[]).await;
    assert!(
        answer.status.is_success(),
        "{} {}",
        answer.status,
        answer.body
    );
    let value: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    value["email"].as_str().map(str::to_owned)
}

fn email(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4())
}

async fn sign_up(app: &TestApp, email: &str) -> String {
    let answer = call(
        app,
        None,
        "sign_up",
        &[
            ("name", "Someone"),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert!(
        answer.status.is_success(),
        "{} {}",
        answer.status,
        answer.body
    );
    answer.session_id().expect("sign-up sets a session cookie")
}

#[tokio::test]
async fn a_session_id_planted_before_sign_in_is_worthless_after_it() {
    let app = spawn_app().await;
    let alice = email("alice");
    sign_up(&app, &alice).await;

    // Mallory has a real, live session id of her own and plants it in Alice's browser.
    let mallory_session = sign_up(&app, &email("mallory")).await;
    let signed_in = call(
        &app,
        Some(&mallory_session),
        "sign_in",
        &[("email", &alice), ("password", PASSWORD)],
    )
    .await;
    assert!(signed_in.status.is_success(), "{}", signed_in.body);
    let alice_session = signed_in.session_id().expect("a new session cookie");
    assert_ne!(alice_session, mallory_session);
    assert_eq!(
        whoami(&app, &alice_session).await.as_deref(),
        Some(alice.as_str())
    );
    // The planted id was retired by the rotation: it is nobody now, certainly not Alice.
    assert_eq!(whoami(&app, &mallory_session).await, None);

    // A made-up id (never issued) is not adopted either.
    let made_up = "AAAAAAAAAAAAAAAAAAAAAA";
    let signed_in = call(
        &app,
        Some(made_up),
        "sign_in",
        &[("email", &alice), ("password", PASSWORD)],
    )
    .await;
    assert!(signed_in.status.is_success(), "{}", signed_in.body);
    let second = signed_in.session_id().expect("a new session cookie");
    assert_ne!(second, made_up);
    assert_eq!(whoami(&app, made_up).await, None);
    assert_eq!(whoami(&app, &second).await.as_deref(), Some(alice.as_str()));

    // Signing out kills the session server-side, not just the cookie.
    let out = call(&app, Some(&second), "sign_out", &[]).await;
    assert!(
        out.status.is_success() || out.status.is_redirection(),
        "{}",
        out.status
    );
    assert_eq!(whoami(&app, &second).await, None);
    // The other session of Alice is untouched.
    assert_eq!(
        whoami(&app, &alice_session).await.as_deref(),
        Some(alice.as_str())
    );
}

const RATE_LIMITED: &str = "Too many sign-in attempts";
const WRONG: &str = "don't match";

#[tokio::test]
async fn the_sixth_wrong_password_locks_the_email_even_for_the_right_password() {
    let app = spawn_app().await;
    let victim = email("victim");
    let bystander = email("bystander");
    sign_up(&app, &victim).await;
    sign_up(&app, &bystander).await;

    for attempt in 1..=5 {
        let a = call(
            &app,
            None,
            "sign_in",
            &[("email", &victim), ("password", "guess-0000")],
        )
        .await;
        assert!(a.body.contains(WRONG), "attempt {attempt}: {}", a.body);
    }
    let sixth = call(
        &app,
        None,
        "sign_in",
        &[("email", &victim), ("password", "guess-0006")],
    )
    .await;
    assert!(sixth.body.contains(RATE_LIMITED), "{}", sixth.body);
    // Right password now: still refused, and no session is handed out.
    let right = call(
        &app,
        None,
        "sign_in",
        &[("email", &victim), ("password", PASSWORD)],
    )
    .await;
    assert!(!right.status.is_success());
    assert!(right.body.contains(RATE_LIMITED), "{}", right.body);
    assert!(right.session_cookie().is_none());
    // The same address spelled differently is the same account, and the same lock.
    let shouted = format!("  {}  ", victim.to_uppercase());
    let a = call(
        &app,
        None,
        "sign_in",
        &[("email", &shouted), ("password", PASSWORD)],
    )
    .await;
    assert!(a.body.contains(RATE_LIMITED), "{}", a.body);
    // Other accounts are not locked out by it.
    let other = call(
        &app,
        None,
        "sign_in",
        &[("email", &bystander), ("password", PASSWORD)],
    )
    .await;
    assert!(other.status.is_success(), "{}", other.body);
}

/// Guesses sent all at once must not slip past the limit while earlier ones are still being
/// checked: at most 5 passwords are ever tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_race_past_the_limit() {
    let app = Arc::new(spawn_app().await);
    let victim = email("raced");
    sign_up(&app, &victim).await;
    let mut guesses = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        let victim = victim.clone();
        guesses.push(tokio::spawn(async move {
            let password = format!("guess-{i:04}");
            call(
                &app,
                None,
                "sign_in",
                &[("email", &victim), ("password", &password)],
            )
            .await
            .body
        }));
    }
    let mut tried = 0;
    for g in guesses {
        let body = g.await.unwrap();
        if body.contains(WRONG) {
            tried += 1;
        } else {
            assert!(body.contains(RATE_LIMITED), "{body}");
        }
    }
    assert!(tried <= 5, "{tried} of 20 concurrent guesses were checked");
    let right = call(
        &app,
        None,
        "sign_in",
        &[("email", &victim), ("password", PASSWORD)],
    )
    .await;
    assert!(right.body.contains(RATE_LIMITED), "{}", right.body);
}

/// Collects a server-sent event stream into a string in the background.
async fn follow(customer: &Customer, path: &str) -> Arc<Mutex<String>> {
    let mut response = customer
        .http
        .get(customer.base.join(path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = response.chunk().await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    text
}

#[tokio::test]
async fn no_card_operation_works_on_another_customers_card() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;

    let active = alice.add_card().await;
    app.submit_card(&alice.form_url(&active).await, SUCCESS)
        .await;
    let failed = alice.add_card().await;
    app.submit_card(&alice.form_url(&failed).await, DECLINE)
        .await;
    app.wait_for_state(&active, "active").await;
    app.wait_for_state(&failed, "failed").await;
    let pending = alice.add_card().await;
    let bobs = bob.add_card().await;

    // Bob follows his live stream from the very beginning.
    let bob_stream = follow(&bob, "/account/cards/events?since=0").await;
    let alice_stream = follow(&alice, "/account/cards/events?since=0").await;

    let mut refused = 0;
    for card in [&active, &failed, &pending] {
        for endpoint in ["remove_card", "make_default_card"] {
            let (status, body) = bob.call(endpoint, &[("card_id", card)]).await;
            assert!(!status.is_success(), "{endpoint} {card}: {status} {body}");
            assert!(body.contains("isn't in your saved cards"), "{body}");
            refused += 1;
        }
    }
    // "Try again" naming Alice's failed card: Bob gets a card of his own, hers stays.
    let (status, body) = bob.call("add_card", &[("replaces", &failed)]).await;
    assert!(status.is_success(), "{status} {body}");
    // Ids that are not ids at all.
    for card in ["' OR '1'='1", "%", "*", ""] {
        let (status, _) = bob.call("remove_card", &[("card_id", card)]).await;
        assert!(!status.is_success(), "{card:?}");
    }
    // Server functions are not reachable by GET (a cross-site link or image), with Bob's cookie.
    for endpoint in ["remove_card", "make_default_card"] {
        let response = bob
            .http
            .get(
                bob.base
                    .join(&format!("/api/{endpoint}?card_id={active}"))
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert!(!response.status().is_success(), "GET {endpoint}");
    }
    // And even Alice's cookie cannot do it by GET.
    let response = alice
        .http
        .get(
            alice
                .base
                .join(&format!("/api/remove_card?card_id={active}"))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(!response.status().is_success());

    assert_eq!(app.card_state(&active).await, "active");
    assert_eq!(app.card_state(&failed).await, "failed");
    assert_eq!(app.card_state(&pending).await, "pending");
    let alice_cards = alice.cards().await;
    let ids: Vec<&str> = alice_cards["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{alice_cards}");
    let bob_cards = bob.cards().await;
    for c in bob_cards["cards"].as_array().unwrap() {
        assert!(![&active, &failed, &pending].contains(&&c["id"].as_str().unwrap().to_owned()));
    }

    // Alice changes things; then Bob removes his own card, which is the marker that his stream
    // has caught up past all of Alice's changes.
    let (status, _) = alice.call("remove_card", &[("card_id", &pending)]).await;
    assert!(status.is_success());
    let (status, _) = bob.call("remove_card", &[("card_id", &bobs)]).await;
    assert!(status.is_success());
    let within = Duration::from_secs(20);
    eventually(within, "Bob's removal on his stream", || async {
        let text = bob_stream.lock().unwrap();
        (text.contains(&bobs) && text.contains(r#""announcement":"removed""#)).then_some(())
    })
    .await;
    eventually(within, "Alice's removal on her stream", || async {
        let text = alice_stream.lock().unwrap();
        text.contains(r#""announcement":"removed""#).then_some(())
    })
    .await;
    let bob_text = bob_stream.lock().unwrap().clone();
    for card in [&active, &failed, &pending] {
        assert!(
            !bob_text.contains(card.as_str()),
            "Bob saw {card}: {bob_text}"
        );
    }
    assert!(!alice_stream.lock().unwrap().contains(&bobs));
    eprintln!("refused {refused} of {refused} cross-customer card operations");

    // Signed out: no stream at all.
    let response = raw_client()
        .get(app.url("/account/cards/events?since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn cross_origin_posts_to_every_server_function_are_refused() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let card = alice.add_card().await;
    let host = app.base.authority().to_owned();
    let forged: Vec<(&str, String)> = vec![
        ("origin", "https://evil.example".into()),
        ("origin", "null".into()),
        ("origin", format!("http://{host}.evil.example")),
        ("origin", "http://127.0.0.1:1".into()),
        ("sec-fetch-site", "cross-site".into()),
        ("sec-fetch-site", "same-site".into()),
    ];
    let mut refused = 0;
    let mut tried = 0;
    for endpoint in ENDPOINTS {
        for (header, value) in &forged {
            let response = alice
                .http
                .post(app.url(&format!("/api/{endpoint}")))
                .header(*header, value)
                .form(&[
                    ("card_id", card.as_str()),
                    ("email", alice.email.as_str()),
                    ("password", PASSWORD),
                    ("name", "Mallory"),
                ])
                .send()
                .await
                .unwrap();
            tried += 1;
            assert_eq!(response.status(), 403, "{endpoint} with {header}: {value}");
            refused += 1;
        }
    }
    // Page routes too (no-JS form posts land there in some setups).
    let response = alice
        .http
        .post(app.url("/account/cards"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Nothing happened: the card is there, Alice is still signed in, no account was made.
    assert_eq!(app.card_state(&card).await, "pending");
    assert_eq!(alice.cards().await["signed_in"], true);
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 2); // demo + alice

    // The same calls from our own origin work.
    let response = alice
        .http
        .post(app.url("/api/list_cards"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("x", "")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    // Jetpay is not a browser: its POST (no Origin) is judged by its signature alone.
    app.submit_card(&alice.form_url(&card).await, SUCCESS).await;
    app.wait_for_state(&card, "active").await;
    // And a browser's cross-site post to the webhook gets the signature check, not a pass.
    let response = raw_client()
        .post(app.url("/webhooks/jetpay"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    eprintln!("refused {refused} of {tried} cross-origin server function posts");
}

fn assert_security_headers(what: &str, headers: &HeaderMap, jetpay_origin: &str) {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = get("content-security-policy");
    let directive = |name: &str| -> Vec<String> {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{what}: CSP without {name}: {csp}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(directive("frame-src"), [jetpay_origin], "{what}: {csp}");
    assert_eq!(directive("frame-ancestors"), ["'none'"], "{what}: {csp}");
    assert_eq!(directive("object-src"), ["'none'"], "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert!(
        [
            "no-referrer",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin"
        ]
        .contains(&get("referrer-policy").as_str()),
        "{what}"
    );
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{what}: CORS opened"
    );
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("pkg")).unwrap();
    std::fs::write(site.path().join("pkg/test.css"), "body{}").unwrap();
    std::fs::write(site.path().join("favicon.ico"), [0u8; 16]).unwrap();
    let app = spawn_app_with(&[("LEPTOS_SITE_ROOT", site.path().to_str().unwrap())]).await;
    let jetpay_origin = app.sandbox.origin().ascii_serialization();
    let alice = app.customer("alice").await;
    let client = raw_client();

    let mut checked = 0;
    for (path, expected) in [
        ("/", 200),
        ("/sign-in", 200),
        ("/sign-up", 200),
        ("/account/cards", 200),
        ("/no-such-page", 404),
        ("/pkg/test.css", 200),
        ("/favicon.ico", 200),
        ("/pkg/missing.js", 404),
        ("/health", 200),
        ("/account/cards/events", 401),
        ("/webhooks/jetpay", 405),
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), expected, "GET {path}");
        assert_security_headers(&format!("GET {path}"), response.headers(), &jetpay_origin);
        checked += 1;
    }
    // The signed-in page, and server function answers: success, refusal, unknown, forbidden.
    let response = alice
        .http
        .get(app.url("/account/cards"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_security_headers("signed-in page", response.headers(), &jetpay_origin);
    for (endpoint, origin) in [
        ("list_cards", None),
        ("remove_card", None),
        ("no_such_function", None),
        ("list_cards", Some("https://evil.example")),
    ] {
        let mut request = alice
            .http
            .post(app.url(&format!("/api/{endpoint}")))
            .form(&[("card_id", "x")]);
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        let response = request.send().await.unwrap();
        assert_security_headers(
            &format!("POST /api/{endpoint} {origin:?}"),
            response.headers(),
            &jetpay_origin,
        );
        checked += 1;
    }
    // Webhook refusals: unsigned, and too large.
    for body in [
        b"{}".to_vec(),
        vec![b' '; server::webhook::MAX_BODY_BYTES + 1],
    ] {
        let response = client
            .post(app.url("/webhooks/jetpay"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status() == 401 || response.status() == 413);
        assert_security_headers("webhook refusal", response.headers(), &jetpay_origin);
        checked += 1;
    }
    eprintln!(
        "security headers on {} of {} responses",
        checked + 1,
        checked + 1
    );
}

fn cookie_attributes(cookie: &str) -> Vec<String> {
    cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_lax_and_not_secure_over_plain_http_in_dev() {
    let app = spawn_app().await;
    let answer = call(
        &app,
        None,
        "sign_up",
        &[
            ("name", "Dev"),
            ("email", &email("dev")),
            ("password", PASSWORD),
        ],
    )
    .await;
    let cookie = answer.session_cookie().expect("session cookie");
    let attributes = cookie_attributes(&cookie);
    assert!(attributes.contains(&"httponly".into()), "{cookie}");
    assert!(attributes.contains(&"samesite=lax".into()), "{cookie}");
    assert!(attributes.contains(&"path=/".into()), "{cookie}");
    assert!(!attributes.contains(&"secure".into()), "{cookie}");
}

/// Production: a `__Host-` session cookie that is Secure, HSTS, no cache for account pages and
/// server functions, a CSP whose scripts need this response's nonce, and no demo account.
#[tokio::test]
async fn production_hardens_cookies_headers_and_seeds_nothing() {
    let (app, _jetpay) = spawn_prod_app(&[]).await;
    // Same-origin posts come from the public origin, whatever Host the proxy passes on.
    let response = raw_client()
        .post(app.url("/api/sign_up"))
        .header("origin", "https://cards.example.test")
        .form(&[
            ("name", "Prod"),
            ("email", &email("prod")),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("__Host-{SESSION_COOKIE}=")))
        .expect("a __Host- session cookie")
        .to_owned();
    let attributes = cookie_attributes(&cookie);
    for wanted in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(attributes.contains(&wanted.into()), "{cookie}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "{cookie}"
    );
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    assert!(response.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));

    let page = raw_client().get(app.url("/sign-in")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        page.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    assert!(page.headers().contains_key("strict-transport-security"));
    let html = page.text().await.unwrap();
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    let nonce = script_src
        .split_whitespace()
        .find_map(|t| t.strip_prefix("'nonce-"))
        .and_then(|t| t.strip_suffix('\''))
        .expect("a script nonce");
    // Every inline script of the page carries the header's nonce.
    let inline_scripts = html.matches("<script").count();
    assert!(inline_scripts > 0);
    assert_eq!(
        html.matches(&format!("nonce=\"{nonce}\"")).count(),
        inline_scripts,
        "{html}"
    );
    // No dev conveniences: the demo account does not exist.
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
}

/// Six wrong passwords for my email from the attacker's address lock that address out, not me:
/// from my own address I still sign in at once.
#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out() {
    let app = spawn_app_with(&[("TRUSTED_CLIENT_IP_HEADER", "X-Forwarded-For")]).await;
    let owner = email("owner");
    sign_up(&app, &owner).await;
    let from = |ip: &'static str, password: &'static str| {
        let app = &app;
        let owner = owner.clone();
        async move {
            let response = raw_client()
                .post(app.url("/api/sign_in"))
                .header("x-forwarded-for", ip)
                .form(&[("email", owner.as_str()), ("password", password)])
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    for _ in 0..5 {
        let (_, body) = from("203.0.113.66", "guess-1234").await;
        assert!(body.contains(WRONG), "{body}");
    }
    let (status, body) = from("203.0.113.66", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = from("198.51.100.7", PASSWORD).await;
    assert!(
        status.is_success(),
        "the owner was locked out: {status} {body}"
    );
}

/// Per client address: a burst of sign-ups from one address is cut off with a plain sentence;
/// another address is not affected; and without a trusted proxy header configured, a client
/// cannot dodge the limit by sending `X-Forwarded-For` itself.
#[tokio::test]
async fn sign_ups_are_limited_per_client_address() {
    for trusted in [true, false] {
        let mut vars = vec![("IP_RATE_LIMIT_PER_MINUTE", "5")];
        if trusted {
            vars.push(("TRUSTED_CLIENT_IP_HEADER", "X-Forwarded-For"));
        }
        let app = spawn_app_with(&vars).await;
        let sign_up_from = |ip: String| {
            let app = &app;
            async move {
                raw_client()
                    .post(app.url("/api/sign_up"))
                    .header("x-forwarded-for", ip)
                    .form(&[
                        ("name", "Burst"),
                        ("email", &email("burst")),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await
                    .unwrap()
            }
        };
        for i in 0..5 {
            // Untrusted: a different spoofed address each time, which must not matter.
            let ip = if trusted {
                "203.0.113.1".to_owned()
            } else {
                format!("203.0.113.{i}")
            };
            assert!(sign_up_from(ip).await.status().is_success());
        }
        let last = if trusted {
            "203.0.113.1"
        } else {
            "203.0.113.99"
        };
        let refused = sign_up_from(last.to_owned()).await;
        assert_eq!(
            refused.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "trusted: {trusted}"
        );
        let body = refused.text().await.unwrap();
        assert!(body.contains("Wait a minute"), "{body}");
        if trusted {
            assert!(sign_up_from("198.51.100.2".into())
                .await
                .status()
                .is_success());
        }
    }
}

/// Add, remove, add again: each asks Jetpay for a tokenization URL, so the pending cap alone is
/// no bound. The hourly count of cards added is.
#[tokio::test]
async fn add_then_remove_in_a_loop_is_limited_per_hour() {
    let app = spawn_app_with(&[("CARDS_ADDED_PER_HOUR", "4")]).await;
    let looper = app.customer("looper").await;
    for _ in 0..4 {
        let card = looper.add_card().await;
        let (status, body) = looper.call("remove_card", &[("card_id", &card)]).await;
        assert!(status.is_success(), "{body}");
    }
    let (status, body) = looper.call("add_card", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("in the last hour"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 4);
}

/// `next` after sign-in never leaves the site, however it is spelled, and never breaks the
/// request (a newline used to panic it).
#[tokio::test]
async fn sign_in_never_redirects_off_site() {
    let app = spawn_app().await;
    let who = email("redirected");
    sign_up(&app, &who).await;
    let variants = [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r\n/evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/.//evil.example/",
        "///evil.example",
        " //evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
    ];
    for next in variants {
        let response = raw_client()
            .post(app.url("/api/sign_in"))
            .form(&[
                ("email", who.as_str()),
                ("password", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection() || response.status().is_success(),
            "{next:?}: {}",
            response.status()
        );
        if let Some(location) = response.headers().get("location") {
            let location = location.to_str().unwrap();
            let resolved = url::Url::parse(&app.url("/"))
                .unwrap()
                .join(location)
                .unwrap();
            assert_eq!(
                resolved.origin(),
                url::Url::parse(&app.url("/")).unwrap().origin(),
                "{next:?} -> {location:?}"
            );
            assert!(!location.starts_with("//"), "{next:?} -> {location:?}");
        }
    }
    // The ordinary case still works.
    let response = raw_client()
        .post(app.url("/api/sign_in"))
        .form(&[
            ("email", who.as_str()),
            ("password", PASSWORD),
            ("next", "/account/cards?x=1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/account/cards?x=1");
}

/// Behind a reverse proxy that rewrites `Host`, a browser's same-origin post still works (its
/// Origin is the public URL); a forged `Host` matching a forged `Origin` does not pass.
#[tokio::test]
async fn origin_is_checked_against_the_public_url_behind_a_proxy() {
    let app = spawn_app_unregistered(&[("PUBLIC_URL", "https://cards.example.test")]).await;
    let post = |host: &'static str, origin: &'static str| {
        let app = &app;
        async move {
            raw_client()
                .post(app.url("/api/sign_up"))
                .header("host", host)
                .header("origin", origin)
                .form(&[
                    ("name", "Proxied"),
                    ("email", &email("proxied")),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The proxy passes its upstream address as Host.
    assert!(post("127.0.0.1:8080", "https://cards.example.test")
        .await
        .is_success());
    assert!(post("backend.internal", "https://cards.example.test")
        .await
        .is_success());
    for (host, origin) in [
        ("evil.example", "https://evil.example"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("cards.example.test", "http://cards.example.test"),
        ("cards.example.test", "null"),
    ] {
        assert_eq!(
            post(host, origin).await,
            StatusCode::FORBIDDEN,
            "{host} {origin}"
        );
    }
}

/// A form over the size limit gets its 413 through a proxy too: the server reads the rest of a
/// moderately large body before answering, so the connection is not reset under the answer. (The
/// two-instance browser run lost the 413 behind its proxy 1 time in 3 before; this TCP proxy
/// never did, so this test guards the behaviour rather than reproducing that race.)
#[tokio::test]
async fn an_oversized_form_gets_413_through_a_proxy() {
    let app = spawn_app().await;
    let proxy = common::process::round_robin(vec![app.base.authority().to_owned()]).await;
    let email = "x".repeat(200_000);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let status = common::client()
            .post(format!("{proxy}/api/sign_in"))
            .form(&[("email", email.as_str()), ("password", "a long password")])
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| *s == 413), "{statuses:?}");
}
