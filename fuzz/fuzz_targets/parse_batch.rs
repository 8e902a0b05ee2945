//! Webhook bodies into `WebhookBatch`, then every event through `Event::kind`: never a panic,
//! never a stack overflow, and whatever parses survives a round trip unchanged in meaning.
#![no_main]

use jetpay::wire::WebhookBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<WebhookBatch>(data) else {
        return;
    };
    let kinds: Vec<_> = batch.events.iter().map(|e| e.kind()).collect();
    let again = serde_json::to_vec(&batch).expect("a parsed batch serialises");
    let back: WebhookBatch = serde_json::from_slice(&again).expect("and parses again");
    assert_eq!(back.webhook_id, batch.webhook_id);
    let ids = |b: &WebhookBatch| b.events.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&back), ids(&batch));
    let kinds_back: Vec<_> = back.events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds_back, kinds);
});
