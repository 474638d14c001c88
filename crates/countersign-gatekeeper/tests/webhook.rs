//! Signed webhook alerts (`[[webhooks]]`, `src/webhook.rs`) against real HTTP
//! receivers on 127.0.0.1: the deliveries carry Standard Webhooks signatures that
//! verify with the configured secret and describe the denials that caused them; a
//! receiver that is down or never answers slows no request, and its lost events are
//! counted in the metrics.

// Tests may unwrap and index: a panic here is a failed test, not a denial of service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request as HttpRequest, StatusCode};
use base64::Engine as _;
use common::*;
use countersign_core::signature::encode_list;
use countersign_core::text::b64;
use countersign_core::{Decision, ErrorCode, Role};
use hmac::{Hmac, Mac as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that keeps every delivery and answers 204.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body.to_vec()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn webhook(url: &str, extra: &str) -> String {
    format!(
        "[[webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nallow_http = true\nretry_base_ms = 10\n{extra}\n"
    )
}

/// Checks the Standard Webhooks signature of a delivery with an HMAC computed here.
fn verify(headers: &HeaderMap, body: &[u8]) {
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let id = h("webhook-id");
    let ts: u64 = h("webhook-timestamp").parse().unwrap();
    assert!(ts.abs_diff(now()) < 60, "timestamp {ts}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(h("webhook-signature"), want);
    assert_eq!(h("content-type"), "application/json");
}

/// A signed request sent again: the first is allowed, the next are `replayed`.
fn repeatable() -> impl Fn() -> HttpRequest<Body> {
    let (parts, _) = signed(&list("a/").request(), vec![]).into_parts();
    move || {
        let mut r = HttpRequest::get(parts.uri.clone())
            .body(Body::empty())
            .unwrap();
        *r.headers_mut() = parts.headers.clone();
        r
    }
}

/// A request signed with a key that is not `v1`'s: `bad_signature`.
fn forged() -> HttpRequest<Body> {
    let request = list("a/").request();
    let canonical = request.encode();
    let sig = sign(&keys().admin, Role::vendor(), "v1", &canonical);
    raw(
        "GET",
        &url_of(&request),
        &b64(&canonical),
        &encode_list(&[sig]),
        vec![],
    )
}

async fn wait_for(got: &Received, n: usize) -> Vec<(HeaderMap, Vec<u8>)> {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got.lock().unwrap().clone()
}

async fn metrics_text(h: &Harness) -> String {
    let r = h
        .send(HttpRequest::get("/metrics").body(Body::empty()).unwrap())
        .await;
    String::from_utf8(body_bytes(r).await).unwrap()
}

#[tokio::test]
async fn bursts_are_delivered_signed_with_their_clients() {
    let (url, got) = receiver().await;
    let extra = webhook(
        &url,
        "events = [\"ip_denied\", \"replayed\"]\nburst_threshold = 2\nburst_window_secs = 60",
    );
    let h = Harness::with_extra(&Backend::SqliteLocal, &extra).await;
    // One denied address is no burst; neither is an allowed request.
    let again = repeatable();
    assert_eq!(h.send(again()).await.status(), StatusCode::OK);
    let r = h
        .send_from(signed(&list("a/").request(), vec![]), "127.0.0.2")
        .await;
    assert_eq!(error_code(r).await, "ip_denied");
    // A bad signature is not among this webhook's events.
    for _ in 0..3 {
        assert_eq!(error_code(h.send(forged()).await).await, "bad_signature");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(got.lock().unwrap().is_empty());
    // The second of each completes a burst.
    let r = h
        .send_from(signed(&list("a/").request(), vec![]), "127.0.0.2")
        .await;
    assert_eq!(error_code(r).await, "ip_denied");
    for ip in ["127.0.0.1", "127.0.0.4"] {
        assert_eq!(error_code(h.send_from(again(), ip).await).await, "replayed");
    }
    let got = wait_for(&got, 2).await;
    assert_eq!(got.len(), 2);
    let mut events = Vec::new();
    for (headers, body) in &got {
        verify(headers, body);
        events.push(serde_json::from_slice::<serde_json::Value>(body).unwrap());
    }
    events.sort_by_key(|e| e["type"].as_str().unwrap().to_owned());
    let [ip, replay] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(ip["type"], "countersign.alert.ip_denied");
    assert_eq!(ip["gatekeeper"], GK);
    assert_eq!(ip["data"]["count"], 2);
    assert_eq!(ip["data"]["window_secs"], 60);
    assert_eq!(
        ip["data"]["clients"],
        serde_json::json!([{"ip": "127.0.0.2", "count": 2}])
    );
    assert_eq!(replay["type"], "countersign.alert.replayed");
    assert_eq!(
        replay["data"]["clients"],
        serde_json::json!([{"ip": "127.0.0.1", "count": 1}, {"ip": "127.0.0.4", "count": 1}])
    );
    // Each delivery has its own id.
    assert_ne!(got[0].0["webhook-id"], got[1].0["webhook-id"]);
    // The audit log has the denials the events summarise.
    let entries = h.all_entries().await;
    let denied = |c: ErrorCode| {
        entries
            .iter()
            .filter(|e| e.decision == Decision::Deny(c))
            .count()
    };
    assert_eq!(denied(ErrorCode::IpDenied), 2);
    assert_eq!(denied(ErrorCode::Replayed), 2);
    let text = metrics_text(&h).await;
    assert!(
        text.contains(
            "countersign_webhook_deliveries_total{webhook=\"0\",outcome=\"delivered\"} 2\n"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn receivers_that_are_down_or_silent_slow_no_request() {
    // Down: nothing listens on this port any more.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    // Silent: accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let extra = format!(
        "{}{}",
        webhook(&down, "burst_threshold = 1\nmax_attempts = 2"),
        webhook(
            &silent_url,
            "burst_threshold = 1\nqueue = 1\ntimeout_ms = 60000\nmax_attempts = 1"
        )
    );
    let h = Harness::with_extra(&Backend::SqliteLocal, &extra).await;
    let again = repeatable();
    // Every request is answered while the silent receiver holds its first delivery
    // for a minute: none waits for a webhook.
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        assert_eq!(h.send(again()).await.status(), StatusCode::OK);
        assert_eq!(error_code(h.send(again()).await).await, "replayed");
        let r = h
            .send_from(signed(&list("a/").request(), vec![]), "127.0.0.2")
            .await;
        assert_eq!(error_code(r).await, "ip_denied");
        assert_eq!(error_code(h.send(forged()).await).await, "bad_signature");
        for _ in 0..20 {
            assert_eq!(
                h.send(signed(&list("a/").request(), vec![])).await.status(),
                StatusCode::OK
            );
        }
    })
    .await;
    assert!(answered.is_ok(), "a request waited for a webhook");
    // Three events each: the down receiver's fail after two attempts; the silent
    // receiver holds one, queues one and drops one.
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics_text(&h).await;
        if text.contains("{webhook=\"0\",outcome=\"failed\"} 3\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        "{webhook=\"0\",outcome=\"delivered\"} 0\n",
        "{webhook=\"0\",outcome=\"failed\"} 3\n",
        "{webhook=\"0\",outcome=\"dropped\"} 0\n",
        "{webhook=\"1\",outcome=\"delivered\"} 0\n",
        "{webhook=\"1\",outcome=\"failed\"} 0\n",
        "{webhook=\"1\",outcome=\"dropped\"} 1\n",
    ] {
        assert!(
            text.contains(&format!("countersign_webhook_deliveries_total{line}")),
            "{line}{text}"
        );
    }
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_with_their_key() {
    let dir = temp_dir();
    let (bucket, _, _) = backend_config(&Backend::SqliteLocal, dir.path()).await;
    for (extra, key, words) in [
        (
            "[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
            "webhooks[0].url",
            "plain HTTP",
        ),
        (
            "[[webhooks]]\nurl = \"https://alerts.example/hook\"\nsecret = \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
            "webhooks[0].secret",
            "whsec_",
        ),
        (
            "[[webhooks]]\nurl = \"https://alerts.example/hook\"\n",
            "webhooks[0].secret",
            "exactly one",
        ),
        (
            "[[webhooks]]\nurl = \"https://alerts.example/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"replayed\", \"deleted\"]\n",
            "webhooks[0].events[1]",
            "not an event",
        ),
        (
            "[[webhooks]]\nurl = \"https://alerts.example/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nburst_threshold = 0\n",
            "webhooks[0].burst_threshold",
            "between 1 and",
        ),
    ] {
        let text = config_text(&bucket, "", extra);
        let e = countersign_gatekeeper::config::Config::from_toml(&text, Some(dir.path()))
            .expect_err(extra);
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(words), "{e}");
    }
}

#[tokio::test]
async fn integration_lag_is_sent_once_when_it_starts() {
    let (url, got) = receiver().await;
    let extra = webhook(
        &url,
        "events = [\"integration_lag\", \"checkpoint_too_old\"]\nintegration_lag_max_secs = 1\ncheck_interval_secs = 1",
    );
    // The harness runs no integrator: entries stay outside every checkpoint.
    let h = Harness::with_extra(&Backend::SqliteLocal, &extra).await;
    assert_eq!(
        h.send(signed(&list("a/").request(), vec![])).await.status(),
        StatusCode::OK
    );
    let first = wait_for(&got, 1).await;
    assert_eq!(first.len(), 1);
    let (headers, body) = &first[0];
    verify(headers, body);
    let event: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "countersign.alert.integration_lag");
    assert_eq!(event["data"]["max_secs"], 1);
    assert!(event["data"]["age_secs"].as_u64().unwrap() >= 2, "{event}");
    assert_eq!(event["data"]["entries_waiting"], 1);
    // It still holds, but it was already sent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(got.lock().unwrap().len(), 1);
}
