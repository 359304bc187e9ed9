//! DynamoStore against moto's DynamoDB: the shared store conformance suite,
//! pagination of large queries, and error mapping.

use std::sync::Mutex;

use ferry_core::store::{Cond, ItemStore};
use ferry_testkit::store_conformance;
use serde_json::json;

use crate::common::{aws_config, fresh_store, moto_endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_store_conforms() {
    let config = aws_config(&moto_endpoint()).await;
    // run_all asks for empty stores, synchronously: make them up front.
    let mut stores = Vec::new();
    for _ in 0..store_conformance::STORES_NEEDED {
        stores.push(fresh_store(&config).await);
    }
    let stores = Mutex::new(stores);
    store_conformance::run_all(|| {
        stores
            .lock()
            .unwrap()
            .pop()
            .expect("STORES_NEEDED stores are enough")
    })
    .await;
}

/// A query larger than one DynamoDB page (1 MB) comes back whole and in order.
#[tokio::test]
async fn query_follows_pages() {
    let config = aws_config(&moto_endpoint()).await;
    let store = fresh_store(&config).await;
    let filler = "x".repeat(30_000);
    for i in 0..50 {
        let v = store
            .put(
                "task#big",
                &format!("chunk#{i:04}"),
                &json!({"i": i, "pad": filler}),
                Cond::Any,
            )
            .await;
        assert_eq!(v.unwrap(), Some(1));
    }
    store
        .put("task#big", "meta", &json!({}), Cond::Any)
        .await
        .unwrap();
    let items = store.query("task#big", "chunk#").await.unwrap();
    assert_eq!(items.len(), 50, "every chunk across pages");
    let order: Vec<u64> = items
        .iter()
        .map(|it| it.data["i"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
    assert_eq!(
        store.query("task#big", "").await.unwrap().len(),
        51,
        "empty prefix: every item"
    );
}

#[tokio::test]
async fn missing_table_is_named_with_the_fix() {
    let config = aws_config(&moto_endpoint()).await;
    let store = ferry_aws::DynamoStore::new(&config, "ferry_no_such_table");
    let e = store.get("task#x", "meta").await.unwrap_err();
    assert_eq!(e.name(), "Ferry.Store");
    assert!(
        e.message().contains("ferry_no_such_table") && e.message().contains("FERRY_TABLE"),
        "{e}"
    );
}

/// A network failure is transient (the state machine retries it), not definite.
#[tokio::test]
async fn unreachable_endpoint_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = aws_config(&format!("http://127.0.0.1:{port}")).await;
    let store = ferry_aws::DynamoStore::new(&config, "t");
    let e = store.get("task#x", "meta").await.unwrap_err();
    assert_eq!(e.name(), "Ferry.Transient", "{e}");
}

/// A fake DynamoDB endpoint that answers every call with `status` and the error `code`.
async fn failing_endpoint(
    status: u16,
    code: &'static str,
) -> (String, crate::common::http::Server) {
    use crate::common::http::{response, serve};
    use futures::FutureExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = serve(
        listener,
        std::sync::Arc::new(move |_req| {
            async move {
                let body = json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": "test"});
                response(
                    hyper::StatusCode::from_u16(status).unwrap(),
                    &[("content-type", "application/x-amz-json-1.0"), ("x-amzn-errortype", code)],
                    body.to_string(),
                )
            }
            .boxed()
        }),
    );
    (url, server)
}

/// Throttling and 5xx answers are transient once the SDK's own retries are spent; a refused
/// request (validation) is definite.
#[tokio::test]
async fn throttling_and_server_errors_are_transient() {
    for (status, code, expected) in [
        (
            400,
            "ProvisionedThroughputExceededException",
            "Ferry.Transient",
        ),
        (400, "ThrottlingException", "Ferry.Transient"),
        (500, "InternalServerError", "Ferry.Transient"),
        (400, "ValidationException", "Ferry.Store"),
    ] {
        let (url, _server) = failing_endpoint(status, code).await;
        let store = ferry_aws::DynamoStore::new(&aws_config(&url).await, "t");
        let e = store
            .put("task#x", "meta", &json!({}), Cond::Any)
            .await
            .unwrap_err();
        assert_eq!(e.name(), expected, "{status} {code}: {e}");
        assert!(e.message().contains("\"t\""), "names the table: {e}");
    }
}
