//! The DynamoDB task store: one table, string keys `pk` (`task#<id>`) and
//! `sk` (`meta`, `chunk#..`, ...), attributes `version` (N) and `data`
//! (S, the record as JSON).
//!
//! Invariant: every write is one conditional `UpdateItem` that sets `data`
//! and adds one to `version` atomically, so a write conditioned on a version
//! succeeds for exactly one writer; a failed condition is `Ok(None)`, never an
//! error. Reads are strongly consistent (leases and fencing depend on it).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use ferry_core::store::{Cond, Item, ItemStore};
use ferry_core::FerryError;
use serde_json::Value;

use crate::aws_error::classify;

type Attrs = HashMap<String, AttributeValue>;

/// [`ItemStore`] over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(config: &SdkConfig, table: impl Into<String>) -> Self {
        DynamoStore {
            client: Client::new(config),
            table: table.into(),
        }
    }

    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Create the table (on-demand billing) unless it exists. The SAM template
    /// creates it in AWS; this is for emulators and quick trials.
    pub async fn ensure_table(&self) -> Result<(), FerryError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(internal)
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(internal)
        };
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if classify(&e).is("ResourceInUseException") => Ok(()),
            Err(e) => Err(self.error("create the table", e)),
        }
    }

    /// Map an SDK error; names the table and what to do.
    fn error<E>(&self, action: &str, err: SdkError<E>) -> FerryError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let f = classify(&err);
        let table = &self.table;
        if f.transient {
            return FerryError::Transient(format!(
                "DynamoDB table \"{table}\": cannot {action} now: {}",
                f.text
            ));
        }
        if f.is("ResourceNotFoundException") {
            return FerryError::Store(format!(
                "DynamoDB table \"{table}\" does not exist in this account and region; deploy infra/template.yaml \
                 or set FERRY_TABLE (--table) to the stack's TaskTableName output"
            ));
        }
        if f.is("AccessDeniedException") || f.is("UnrecognizedClientException") {
            return FerryError::Store(format!(
                "DynamoDB table \"{table}\": not allowed to {action}: {}. Grant this role access to the table \
                 (the template's policies do) or check the credentials",
                f.text
            ));
        }
        FerryError::Store(format!(
            "DynamoDB table \"{table}\": cannot {action}: {}",
            f.text
        ))
    }

    fn key(pk: &str, sk: &str) -> Attrs {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    fn decode(&self, attrs: &Attrs) -> Result<Item, FerryError> {
        let text = |name: &str| match attrs.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.as_str()),
            _ => Err(self.corrupt(attrs, &format!("has no string attribute \"{name}\""))),
        };
        let version = match attrs.get("version") {
            Some(AttributeValue::N(n)) => n
                .parse::<u64>()
                .map_err(|_| self.corrupt(attrs, "has a bad version"))?,
            _ => return Err(self.corrupt(attrs, "has no number attribute \"version\"")),
        };
        let data = serde_json::from_str(text("data")?)
            .map_err(|e| self.corrupt(attrs, &format!("has data that is not JSON ({e})")))?;
        Ok(Item {
            pk: text("pk")?.to_string(),
            sk: text("sk")?.to_string(),
            version,
            data,
        })
    }

    fn corrupt(&self, attrs: &Attrs, what: &str) -> FerryError {
        let key = |n: &str| match attrs.get(n) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".to_string(),
        };
        FerryError::Store(format!(
            "DynamoDB table \"{}\": item {} {} {what}; it was not written by Ferry",
            self.table,
            key("pk"),
            key("sk")
        ))
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn internal(e: impl std::fmt::Display) -> FerryError {
    FerryError::Internal(format!("building a DynamoDB request: {e}"))
}

impl ItemStore for DynamoStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, FerryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(&format!("read {pk} {sk}"), e))?;
        out.item
            .as_ref()
            .map(|attrs| self.decode(attrs))
            .transpose()
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, FerryError> {
        // DynamoDB refuses an empty key value, so an empty prefix means "every item of pk".
        let condition = if sk_prefix.is_empty() {
            "pk = :pk"
        } else {
            "pk = :pk AND begins_with(sk, :prefix)"
        };
        let mut values = HashMap::from([(":pk".to_string(), s(pk))]);
        if !sk_prefix.is_empty() {
            values.insert(":prefix".to_string(), s(sk_prefix));
        }
        let mut items = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error(&format!("query {pk} {sk_prefix}*"), e))?;
            for attrs in out.items() {
                items.push(self.decode(attrs)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn put(
        &self,
        pk: &str,
        sk: &str,
        data: &Value,
        cond: Cond,
    ) -> Result<Option<u64>, FerryError> {
        let mut values = HashMap::from([
            (":data".to_string(), s(&data.to_string())),
            (":one".to_string(), n(1)),
        ]);
        let condition = match cond {
            Cond::Any => None,
            Cond::Absent => Some("attribute_not_exists(pk)"),
            Cond::Version(v) => {
                values.insert(":v".to_string(), n(v));
                Some("#version = :v")
            }
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .update_expression("SET #data = :data ADD #version :one")
            .set_condition_expression(condition.map(str::to_string))
            .expression_attribute_names("#data", "data")
            .expression_attribute_names("#version", "version")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if classify(&e).is("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(self.error(&format!("write {pk} {sk}"), e)),
        };
        match out.attributes.as_ref().and_then(|a| a.get("version")) {
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
                FerryError::Store(format!("DynamoDB returned version \"{v}\" for {pk} {sk}"))
            }),
            _ => Err(FerryError::Store(format!(
                "DynamoDB table \"{}\" did not return the new version of {pk} {sk}",
                self.table
            ))),
        }
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), FerryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .send()
            .await
            .map_err(|e| self.error(&format!("delete {pk} {sk}"), e))?;
        Ok(())
    }
}
