//! The hosted card form at `/tokenize/{session}`: the page a platform frames so that card
//! numbers go to "Jetpay" and never through the platform.
//!
//! Server-rendered, no external assets, works without JavaScript; a small static script adds
//! inline validation (the same checks as [`crate::card_checks`], which the server repeats). The
//! only scripts are static text allowed by hash in the CSP, so nothing user-supplied can run;
//! the confirmation page's data travels in a JSON `<script type="application/json">` block.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Datelike, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use tower_http::set_header::SetResponseHeaderLayer;

use jetpay::unspecified;

use crate::card_checks::{self, CardInput, Field, FieldError};
use crate::card_service;
use crate::error::ApiError;
use crate::html::{escape, BASE_CSS};
use crate::state::AppState;
use crate::store::now_ms;

pub fn router(state: &AppState) -> Router<AppState> {
    let csp = content_security_policy(&state.frame_ancestors);
    let header = |name, value: &str| {
        SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        )
    };
    Router::new()
        .route("/tokenize/{session}", get(show).post(submit))
        .layer(header(header::CONTENT_SECURITY_POLICY, &csp))
        .layer(header(header::CACHE_CONTROL, "no-store"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
}

fn script_hash(script: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(script.as_bytes()))
    )
}

/// Framing is allowed for the sandbox itself and the configured platform origins only.
pub fn content_security_policy(frame_ancestors: &[String]) -> String {
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(frame_ancestors.iter().cloned());
    format!(
        "default-src 'none'; script-src {} {} {}; style-src 'unsafe-inline'; img-src data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors {}",
        script_hash(FORM_JS),
        script_hash(CONFIRM_JS),
        script_hash(RESIZE_JS),
        ancestors.join(" ")
    )
}

/// The session's card id if the URL can still be used, else the page to show instead.
async fn usable_session(state: &AppState, session: &str) -> Result<(), ApiError> {
    let row: Option<(Option<String>, i64)> =
        sqlx::query_as("SELECT used_at, expires_at_ms FROM tokenization_sessions WHERE id = ?")
            .bind(session)
            .fetch_optional(&state.pool)
            .await?;
    match row {
        None => Err(ApiError::Page {
            status: StatusCode::NOT_FOUND,
            title: "Card form not found",
            message: "This link is not a valid card form. Close it and start adding your card again.",
        }),
        Some((used, expires)) if used.is_some() || expires <= now_ms() => Err(ApiError::Page {
            status: StatusCode::GONE,
            title: "This link can no longer be used",
            message: "This card form has already been used or has expired. Close it and start adding your card again.",
        }),
        Some(_) => Ok(()),
    }
}

/// `GET /tokenize/{session}`.
async fn show(
    State(state): State<AppState>,
    Path(session): Path<String>,
) -> Result<Html<String>, ApiError> {
    usable_session(&state, &session).await?;
    Ok(Html(render_form(
        &state.frame_ancestors,
        &CardInput::default(),
        &[],
    )))
}

/// `POST /tokenize/{session}`: validate again, then hand the card to the card service.
async fn submit(
    State(state): State<AppState>,
    Path(session): Path<String>,
    Form(input): Form<CardInput>,
) -> Result<Response, ApiError> {
    usable_session(&state, &session).await?;
    let now = Utc::now();
    match card_checks::validate(&input, (now.month(), now.year().unsigned_abs())) {
        Err(errors) => {
            // Keep what was typed, except the card number and CVC.
            let kept = CardInput {
                card_number: String::new(),
                cvc: String::new(),
                ..input
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Html(render_form(&state.frame_ancestors, &kept, &errors)),
            )
                .into_response())
        }
        Ok(card) => {
            let card_id = card_service::submit(&state, &session, &card).await?;
            let page = render_confirmation(&state.frame_ancestors, &card_id, &card);
            Ok(Html(page).into_response())
        }
    }
}

struct FieldSpec {
    field: Field,
    label: &'static str,
    attrs: &'static str,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        field: Field::CardNumber,
        label: "Card number",
        attrs: r#"autocomplete="cc-number" inputmode="numeric" maxlength="23" spellcheck="false" autocorrect="off""#,
    },
    FieldSpec {
        field: Field::Expiry,
        label: r#"Expiry date <span class="hint">(MM/YY)</span>"#,
        attrs: r#"autocomplete="cc-exp" inputmode="numeric" maxlength="7" placeholder="MM/YY""#,
    },
    FieldSpec {
        field: Field::Cvc,
        label: "Security code (CVC)",
        attrs: r#"autocomplete="cc-csc" inputmode="numeric" maxlength="4""#,
    },
    FieldSpec {
        field: Field::Name,
        label: "Name on card",
        attrs: r#"autocomplete="cc-name" spellcheck="false" maxlength="100""#,
    },
    FieldSpec {
        field: Field::PostalCode,
        label: "Postal code",
        attrs: r#"autocomplete="postal-code" maxlength="10""#,
    },
];

fn value_of(input: &CardInput, field: Field) -> &str {
    match field {
        Field::CardNumber => &input.card_number,
        Field::Expiry => &input.expiry,
        Field::Cvc => &input.cvc,
        Field::Name => &input.name,
        Field::PostalCode => &input.postal_code,
    }
}

fn render_field(spec: &FieldSpec, value: &str, error: Option<&str>) -> String {
    let id = spec.field.id();
    let (invalid, message) = match error {
        Some(msg) => (
            format!(r#" aria-invalid="true" aria-describedby="{id}-error""#),
            format!(r#"<p class="error" id="{id}-error">{}</p>"#, escape(msg)),
        ),
        None => (
            String::new(),
            format!(r#"<p class="error" id="{id}-error" hidden></p>"#),
        ),
    };
    format!(
        r#"<div class="field"><label for="{id}">{label}</label><input id="{id}" name="{id}" type="text" required value="{value}" {attrs}{invalid}>{message}</div>"#,
        label = spec.label,
        value = escape(value),
        attrs = spec.attrs,
    )
}

/// The data block the page's scripts read: where they may post, and the resize message's type.
fn parent_data(frame_ancestors: &[String], message: Option<serde_json::Value>) -> String {
    let data = json!({
        "origins": frame_ancestors,
        "resize": unspecified::HOSTED_FORM_RESIZE_MESSAGE,
        "message": message,
    });
    // `<` escaped so the JSON can never close its script element.
    let data = data.to_string().replace('<', "\\u003c");
    format!(
        r#"<script type="application/json" id="jetpay-message">{data}</script>
<script>{RESIZE_JS}</script>"#
    )
}

fn render_form(frame_ancestors: &[String], input: &CardInput, errors: &[FieldError]) -> String {
    let error_for = |f: Field| errors.iter().find(|e| e.field == f).map(|e| e.message);
    let fields: Vec<String> = FIELDS
        .iter()
        .map(|spec| render_field(spec, value_of(input, spec.field), error_for(spec.field)))
        .collect();
    // One compact line of links to the fields; each field carries its own message.
    let summary_items: String = errors
        .iter()
        .map(|e| format!(r##"<a href="#{}">{}</a>"##, e.field.id(), e.field.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let hidden = if errors.is_empty() { " hidden" } else { "" };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Add a card</title><style>{BASE_CSS}{FORM_CSS}</style></head>
<body><main>
<h1 class="visually-hidden">Card details</h1>
<form id="card-form" method="post" novalidate>
<div id="error-summary" class="summary" tabindex="-1" role="alert" aria-labelledby="error-summary-title"{hidden}>
<h2 id="error-summary-title">Please check:</h2> <span id="error-list">{summary_items}</span></div>
{number}
<div class="row">{expiry}{cvc}</div>
<div class="row">{name}{postal}</div>
<button type="submit">Save card</button>
<p class="muted">Sandbox: try 4242 4242 4242 4242, any future date.</p>
</form></main>
<script>{FORM_JS}</script>{data}</body></html>"#,
        data = parent_data(frame_ancestors, None),
        number = fields[0],
        expiry = fields[1],
        cvc = fields[2],
        name = fields[3],
        postal = fields[4],
    )
}

fn render_confirmation(
    frame_ancestors: &[String],
    card_id: &str,
    card: &card_checks::ValidCard,
) -> String {
    let mut message = json!({
        "type": unspecified::HOSTED_FORM_SUBMITTED_MESSAGE,
        "creditCardId": card_id,
    });
    message[unspecified::HOSTED_FORM_MESSAGE_BRAND_FIELD] = json!(card.brand.as_str());
    message[unspecified::HOSTED_FORM_MESSAGE_LAST4_FIELD] = json!(card.last4);
    let data = parent_data(frame_ancestors, Some(message));
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Card received</title><style>{BASE_CSS}{FORM_CSS}</style></head>
<body><main><div class="done" role="status">
<h1>Card received</h1>
<p>Card received. We're verifying it…</p>
<p class="muted">{brand} ending in {last4}. This usually takes a few seconds; the card will show as active once it is verified.</p>
</div></main>
{data}
<script>{CONFIRM_JS}</script></body></html>"#,
        brand = escape(card.brand.display()),
        last4 = escape(&card.last4),
    )
}

const FORM_CSS: &str = r#"
form{margin:0}
.field{margin:0 0 10px;min-width:0}
.row{display:grid;grid-template-columns:1fr 1fr;gap:12px}
label{display:block;font-weight:600;font-size:.9rem;margin:0 0 3px}
.hint{font-weight:400;color:#4a4a4a}
input{display:block;width:100%;font:inherit;padding:7px 9px;border:1px solid #6b6b6b;border-radius:4px;background:#fff;color:#1a1a1a}
input:focus{outline:3px solid #1d5bd6;outline-offset:1px}
input[aria-invalid=true]{border:2px solid #b00020}
.error{color:#b00020;font-size:.8rem;line-height:1.25;margin:3px 0 0}
.summary{border:2px solid #b00020;border-radius:4px;padding:6px 10px;margin:0 0 10px}
.summary:focus{outline:3px solid #1d5bd6}
.summary h2{display:inline;font-size:.9rem;margin:0}
.summary{font-size:.9rem}
.summary a{color:#b00020}
button{font:inherit;font-weight:600;width:100%;padding:9px;border:0;border-radius:4px;background:#1d5bd6;color:#fff;cursor:pointer;margin:2px 0 8px}
button:focus{outline:3px solid #0b2e73;outline-offset:2px}
button:disabled{opacity:.7}
.done{padding:16px 0}
.visually-hidden{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
"#;

/// Inline validation. Messages match `card_checks` word for word.
const FORM_JS: &str = r#"(function(){
var form=document.getElementById('card-form');if(!form)return;
var summary=document.getElementById('error-summary'),list=document.getElementById('error-list');
function digits(v){return v.replace(/[\s-]/g,'');}
function luhn(d){var s=0;for(var i=0;i<d.length;i++){var n=+d.charAt(d.length-1-i);if(i%2===1){n*=2;if(n>9)n-=9;}s+=n;}return d.length>0&&s%10===0;}
function amex(){return /^3[47]/.test(digits(document.getElementById('card_number').value));}
var fmt='Enter the expiry date as MM/YY, for example 04/29.';
var names={card_number:'Card number',expiry:'Expiry date',cvc:'Security code',name:'Name on card',postal_code:'Postal code'};
var checks={
card_number:function(v){var d=digits(v);if(!d)return 'Enter the card number.';if(!/^\d+$/.test(d))return 'The card number can only contain digits.';if(d.length<12||d.length>19)return 'The card number is too short or too long. Check it and try again.';if(!luhn(d))return "This card number isn't valid. Check it and try again.";return '';},
expiry:function(v){var c=v.replace(/\s/g,'');if(!c)return 'Enter the expiry date shown on the card, as MM/YY.';var m=c.match(/^(\d{1,2})\/(\d+)$/)||c.match(/^(\d{2})(\d{2})$/);if(!m)return fmt;var mo=+m[1];if(mo<1||mo>12)return 'The expiry month must be between 01 and 12.';if(m[2].length!==2&&m[2].length!==4)return fmt;var y=+m[2];if(m[2].length===2)y+=2000;var now=new Date();if(y<now.getFullYear()||(y===now.getFullYear()&&mo<now.getMonth()+1))return 'This card has expired. Check the date or use another card.';return '';},
cvc:function(v){var c=v.trim(),n=amex()?4:3;if(!c)return 'Enter the security code (CVC).';if(!/^\d+$/.test(c)||c.length!==n)return n===4?'The security code is the 4 digits on the front of the card.':'The security code is the 3 digits on the back of the card.';return '';},
name:function(v){return v.trim()?'':'Enter the name as it appears on the card.';},
postal_code:function(v){var c=v.trim();if(!c)return "Enter the postal code of the card's billing address.";if(c.length>10||!/^[A-Za-z0-9 -]+$/.test(c))return 'Enter a valid postal code, for example 90210.';return '';}
};
function show(id,msg){var input=document.getElementById(id),err=document.getElementById(id+'-error');
if(msg){err.textContent=msg;err.hidden=false;input.setAttribute('aria-invalid','true');input.setAttribute('aria-describedby',id+'-error');}
else{err.textContent='';err.hidden=true;input.removeAttribute('aria-invalid');input.removeAttribute('aria-describedby');}}
Object.keys(checks).forEach(function(id){var input=document.getElementById(id);
input.addEventListener('blur',function(e){if(e.relatedTarget&&e.relatedTarget.type==='submit')return;if(input.value||input.getAttribute('aria-invalid'))show(id,checks[id](input.value));});
input.addEventListener('input',function(){if(input.getAttribute('aria-invalid')&&!checks[id](input.value))show(id,'');});});
form.addEventListener('submit',function(e){var errors=[];
Object.keys(checks).forEach(function(id){var msg=checks[id](document.getElementById(id).value);show(id,msg);if(msg)errors.push([id,msg]);});
if(!errors.length){form.querySelector('button').disabled=true;return;}
e.preventDefault();list.textContent='';
errors.forEach(function(x,i){var a=document.createElement('a');a.href='#'+x[0];a.textContent=names[x[0]];
if(i)list.appendChild(document.createTextNode(', '));list.appendChild(a);});
summary.hidden=false;summary.focus();});
list.addEventListener('click',function(ev){var id=(ev.target.getAttribute('href')||'').slice(1);if(id){ev.preventDefault();document.getElementById(id).focus();}});
if(!summary.hidden)summary.focus();
})();"#;

/// Tells the framing platform that the form was submitted (never the outcome). Where the browser
/// names the parent's origin (`ancestorOrigins`), only that one of the allowed origins is used.
const CONFIRM_JS: &str = r#"(function(){
var el=document.getElementById('jetpay-message');if(!el||window.parent===window)return;
var d=JSON.parse(el.textContent);if(!d.message)return;
var a=location.ancestorOrigins,to=a&&a.length?d.origins.filter(function(o){return o===a[0];}):d.origins;
to.forEach(function(o){try{window.parent.postMessage(d.message,o);}catch(e){}});
})();"#;

/// Tells the framing platform the page's height whenever it changes, so the frame fits it.
const RESIZE_JS: &str = r#"(function(){
var el=document.getElementById('jetpay-message');if(!el||window.parent===window)return;
var d=JSON.parse(el.textContent),last=0;
var a=location.ancestorOrigins,to=a&&a.length?d.origins.filter(function(o){return o===a[0];}):d.origins;
function post(){var h=Math.ceil(document.documentElement.getBoundingClientRect().height);if(h===last)return;last=h;
to.forEach(function(o){try{window.parent.postMessage({type:d.resize,height:h},o);}catch(e){}});}
if(window.ResizeObserver)new ResizeObserver(post).observe(document.documentElement);
window.addEventListener('load',post);post();
})();"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_only_our_scripts_and_the_configured_frames() {
        let csp = content_security_policy(&["http://localhost:3000".to_owned()]);
        assert!(csp.contains("frame-ancestors 'self' http://localhost:3000"));
        assert!(csp.contains(&script_hash(FORM_JS)));
        assert!(!csp.contains("'unsafe-inline' 'sha"));
        assert!(csp.starts_with("default-src 'none'"));
    }

    #[test]
    fn rerender_marks_errors_and_escapes_values() {
        let input = CardInput {
            name: "<script>x</script>".into(),
            ..CardInput::default()
        };
        let errors = card_checks::validate(&input, (1, 2026)).unwrap_err();
        let page = render_form(&[], &input, &errors);
        assert!(page.contains(r#"id="card_number" name="card_number" type="text" required value="" autocomplete="cc-number" inputmode="numeric""#));
        assert!(page.contains(r#"aria-invalid="true" aria-describedby="card_number-error""#));
        assert!(page.contains(
            r##"<a href="#card_number">Card number</a>, <a href="#expiry">Expiry date</a>"##
        ));
        assert!(page.contains("Enter the card number."));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("<script>x"));
        for f in Field::ALL {
            assert!(page.contains(&format!(r#"<label for="{}">"#, f.id())));
        }
    }
}
