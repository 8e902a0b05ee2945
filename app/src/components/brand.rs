//! Small card brand marks, drawn inline (no images to load) and hidden from screen readers: the
//! row's text already names the brand.

use leptos::prelude::*;

#[component]
pub fn BrandMark(brand: Option<String>) -> impl IntoView {
    let (label, fill, text_fill) = match brand.as_deref() {
        Some("visa") => ("VISA", "#1a1f71", "#ffffff"),
        Some("mastercard") => ("MC", "#000000", "#ffffff"),
        Some("amex") => ("AMEX", "#2e77bb", "#ffffff"),
        Some("discover") => ("DISC", "#ff6000", "#ffffff"),
        _ => ("CARD", "#5b6272", "#ffffff"),
    };
    let mastercard = brand.as_deref() == Some("mastercard");
    view! {
        <svg class="brand-mark" width="40" height="26" viewBox="0 0 40 26" aria-hidden="true" focusable="false">
            <rect width="40" height="26" rx="4" fill=fill/>
            {if mastercard {
                view! {
                    <circle cx="16" cy="13" r="7" fill="#eb001b"/>
                    <circle cx="24" cy="13" r="7" fill="#f79e1b" fill-opacity="0.9"/>
                }
                .into_any()
            } else {
                view! {
                    <text x="20" y="17" text-anchor="middle" font-size="10" font-weight="700"
                        font-family="system-ui, sans-serif" fill=text_fill>{label}</text>
                }
                .into_any()
            }}
        </svg>
    }
}
