//! Several servers in one process, as this test suite and the benchmark run them: one starting
//! must not disturb the pages another is serving.

mod common;

use std::time::Duration;

/// Starting a server works out the app's routes by rendering the app with every resource held
/// back, and Leptos holds them back with a flag global to the process. Worked out by each server
/// as it started, that left any page another server in the process began meanwhile waiting
/// forever for its data (a test hung this way in the suite). Now it is worked out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starting_does_not_stall_the_pages_of_another() {
    let app = common::spawn_app().await;
    let customer = app.customer("busy").await;
    let starting = tokio::spawn(async {
        for _ in 0..20 {
            let _other = common::spawn_app().await;
        }
    });
    let mut loads = 0;
    while !starting.is_finished() {
        let load = async {
            let response = customer
                .http
                .get(app.url("/account/cards"))
                .send()
                .await
                .unwrap();
            response.text().await.unwrap()
        };
        let page = tokio::time::timeout(Duration::from_secs(10), load)
            .await
            .unwrap_or_else(|_| {
                panic!("page load {loads} never finished while another server started")
            });
        assert!(page.contains("Add card"), "{page}");
        loads += 1;
    }
    starting.await.unwrap();
    assert!(loads > 0, "no page was loaded while the others started");
}
