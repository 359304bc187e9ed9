//! SecretsManagerSource against moto's Secrets Manager.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use ferry_aws::SecretsManagerSource;
use ferry_core::secret::SecretSource;
use ferry_testkit::unique_name;

use crate::common::{aws_config, moto_endpoint};

const PASSWORD: &str = "s3cr3t-Pa55-never-printed";

async fn create(client: &Client, name: &str, value: &str) -> String {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create_secret");
    out.arn().expect("secret ARN").to_string()
}

#[tokio::test]
async fn reads_by_name_and_arn_and_never_shows_the_password() {
    let config = aws_config(&moto_endpoint()).await;
    let client = Client::new(&config);
    let name = unique_name("ferry/test/source");
    let arn = create(
        &client,
        &name,
        &format!(r#"{{"engine":"mariadb","host":"db.internal","port":3307,"username":"ferry","password":"{PASSWORD}"}}"#),
    )
    .await;
    let source = SecretsManagerSource::new(&config);
    for id in [&name, &arn] {
        let s = source
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("reading {id}: {e}"));
        assert_eq!(
            (s.host.as_str(), s.port, s.username.as_str()),
            ("db.internal", 3307, "ferry")
        );
        assert_eq!(s.password.expose(), PASSWORD);
        assert!(
            !format!("{s:?}").contains(PASSWORD),
            "Debug shows the password"
        );
    }
}

#[tokio::test]
async fn cached_within_ttl_and_reread_after() {
    let config = aws_config(&moto_endpoint()).await;
    let client = Client::new(&config);
    let name = unique_name("ferry/test/rotating");
    let secret = |pw: &str| format!(r#"{{"host":"h","username":"u","password":"{pw}"}}"#);
    create(&client, &name, &secret("one")).await;
    let cached = SecretsManagerSource::new(&config);
    let short = SecretsManagerSource::new(&config).with_ttl(Duration::ZERO);
    assert_eq!(cached.get(&name).await.unwrap().password.expose(), "one");
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(secret("two"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        cached.get(&name).await.unwrap().password.expose(),
        "one",
        "served from the cache"
    );
    assert_eq!(
        short.get(&name).await.unwrap().password.expose(),
        "two",
        "rotation seen after the TTL"
    );
}

#[tokio::test]
async fn errors_name_the_secret_never_the_value() {
    let config = aws_config(&moto_endpoint()).await;
    let client = Client::new(&config);
    let source = SecretsManagerSource::new(&config);

    let missing = unique_name("ferry/test/missing");
    let e = source.get(&missing).await.unwrap_err();
    assert_eq!(e.name(), "Ferry.BadSecret");
    assert!(
        e.message().contains(&missing) && e.message().contains("does not exist"),
        "{e}"
    );

    let bad = unique_name("ferry/test/bad");
    create(
        &client,
        &bad,
        &format!(r#"{{"host":"h","username":"u","password":"{PASSWORD}","port":"{PASSWORD}"}}"#),
    )
    .await;
    let e = source.get(&bad).await.unwrap_err();
    assert_eq!(e.name(), "Ferry.BadSecret");
    assert!(e.message().contains(&bad), "{e}");
    assert!(
        !e.to_string().contains(PASSWORD),
        "the error shows the value: {e}"
    );
}
