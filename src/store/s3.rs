//! The S3 store: aws-sdk-s3 through the configured endpoint (a VPC interface endpoint in
//! production), SSE-KMS on every write, multipart uploads for large objects, conditional
//! writes (`If-None-Match: *`, `If-Match`) for manifests, `latest.json` and leases, and the
//! SDK's retries (exponential backoff with jitter on throttling, 5xx and timeouts).

use std::sync::Arc;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
};
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

use super::{check_key, ObjectMeta, ObjectStore, Result, StoreError};
use crate::aws::{self, AwsSettings};
use crate::names::StoreUri;

/// How writes are encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// `None`: SSE-KMS with the AWS-managed `aws/s3` key (only when `require_kms = false`).
    pub kms_key_id: Option<String>,
    pub bucket_key: bool,
}

/// A store under `s3://bucket/prefix`.
#[derive(Clone)]
pub struct S3Store {
    bucket: String,
    /// Key prefix without a trailing '/'; empty for the bucket root.
    prefix: String,
    client: Client,
    enc: Encryption,
    multipart_threshold: usize,
    part_size: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("encryption", &self.enc)
            .finish()
    }
}

/// Splits `s3://bucket/prefix` (prefix may be empty).
/// The rules are [`StoreUri`]'s.
pub fn parse_uri(uri: &str) -> Result<(String, String)> {
    match StoreUri::parse(uri)? {
        StoreUri::S3 { bucket, prefix } => Ok((bucket, prefix)),
        StoreUri::File(_) => Err(StoreError::BadUri {
            uri: uri.to_string(),
            reason: "not an s3:// URI".into(),
        }),
    }
}

impl S3Store {
    /// Opens `s3://bucket/prefix` with the given settings. Refuses when `require_kms` is on
    /// and no KMS key is set: nothing is ever written unencrypted or with the wrong key.
    pub fn open(uri: &str, settings: &AwsSettings) -> Result<S3Store> {
        let (bucket, prefix) = parse_uri(uri)?;
        if settings.require_kms && settings.kms_key_id.is_none() {
            return Err(StoreError::BadUri {
                uri: uri.to_string(),
                reason: "refusing to use an S3 store without a KMS key: set [aws] kms_key_id in c360.toml (every write is SSE-KMS encrypted with it), or require_kms = false to use the AWS-managed aws/s3 key".into(),
            });
        }
        let s = settings.clone();
        let client = aws::block_on(async move { aws::s3_client(&s).await }).map_err(|m| {
            StoreError::Backend {
                store: uri.to_string(),
                message: m,
            }
        })?;
        Ok(S3Store::with_client(
            client,
            &bucket,
            &prefix,
            Encryption {
                kms_key_id: settings.kms_key_id.clone(),
                bucket_key: settings.bucket_key,
            },
            (settings.multipart_threshold_mb * super::MIB) as usize,
            (settings.multipart_part_mb * super::MIB) as usize,
        ))
    }

    /// A store over an existing client (tests with mocked clients).
    pub fn with_client(
        client: Client,
        bucket: &str,
        prefix: &str,
        enc: Encryption,
        multipart_threshold: usize,
        part_size: usize,
    ) -> S3Store {
        S3Store {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            client,
            enc,
            multipart_threshold: multipart_threshold.max(1),
            part_size: part_size.max(5 * super::MIB as usize),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full S3 key of a store key.
    pub fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn backend(&self, key: &str, what: &str, msg: String) -> StoreError {
        StoreError::Backend {
            store: self.uri(),
            message: format!("{what} {key}: {msg}"),
        }
    }

    fn put_object(&self, key: &str, data: &[u8], condition: Condition) -> Result<bool> {
        check_key(key)?;
        if data.len() > self.multipart_threshold {
            return self.multipart(key, data, condition);
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data.to_vec()))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .bucket_key_enabled(self.enc.bucket_key);
        if let Some(k) = &self.enc.kms_key_id {
            req = req.ssekms_key_id(k);
        }
        req = match &condition {
            Condition::None => req,
            Condition::Absent => req.if_none_match("*"),
            Condition::Version(v) => req.if_match(v),
        };
        let r = aws::block_on(async move { req.send().await });
        match r {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&condition, &e) => Ok(false),
            Err(e) => Err(self.backend(key, "PutObject", aws::error_text(&e))),
        }
    }

    /// A multipart upload: parts in parallel (4 at a time), completed with the same
    /// condition as a single put; aborted on any failure so no parts linger.
    fn multipart(&self, key: &str, data: &[u8], condition: Condition) -> Result<bool> {
        let full = self.full_key(key);
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .bucket_key_enabled(self.enc.bucket_key);
        if let Some(k) = &self.enc.kms_key_id {
            create = create.ssekms_key_id(k);
        }
        let created = aws::block_on(async move { create.send().await })
            .map_err(|e| self.backend(key, "CreateMultipartUpload", aws::error_text(&e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let chunks: Vec<Vec<u8>> = data.chunks(self.part_size).map(|c| c.to_vec()).collect();
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let (f2, u2) = (full.clone(), upload_id.clone());
        let uploaded = aws::block_on(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(4));
            let mut handles = Vec::new();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let (client, bucket, full, upload_id, sem) = (
                    client.clone(),
                    bucket.clone(),
                    f2.clone(),
                    u2.clone(),
                    sem.clone(),
                );
                handles.push(tokio::spawn(async move {
                    let _permit = sem.acquire().await;
                    let n = i as i32 + 1;
                    client
                        .upload_part()
                        .bucket(bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(n)
                        .body(ByteStream::from(chunk))
                        .send()
                        .await
                        .map(|o| {
                            CompletedPart::builder()
                                .part_number(n)
                                .set_e_tag(o.e_tag().map(str::to_string))
                                .build()
                        })
                        .map_err(|e| aws::error_text(&e))
                }));
            }
            let mut parts = Vec::new();
            for h in handles {
                match h.await {
                    Ok(Ok(p)) => parts.push(p),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(format!("upload task failed: {e}")),
                }
            }
            Ok(parts)
        });
        let abort = |why: String| {
            let req = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id);
            let _ = aws::block_on(async move { req.send().await });
            self.backend(key, "multipart upload", why)
        };
        let parts = uploaded.map_err(abort)?;
        let n_parts = parts.len();
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        complete = match &condition {
            Condition::None => complete,
            Condition::Absent => complete.if_none_match("*"),
            Condition::Version(v) => complete.if_match(v),
        };
        let done = aws::block_on(async move { complete.send().await });
        // Some S3-compatible servers (moto 5.2) name the root element of a successful
        // answer CompleteMultipartUploadResponse; the SDK refuses the name. A 200 whose body
        // carries the new object's ETag and no <Error> is a completed upload.
        let done = match done {
            Err(e)
                if e.raw_response().is_some_and(|r| {
                    r.status().as_u16() == 200
                        && r.body().bytes().is_some_and(|b| {
                            let s = String::from_utf8_lossy(b);
                            s.contains("<ETag>") && !s.contains("<Error>")
                        })
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        };
        match done {
            Ok(_) => {
                tracing::debug!(key = %full, parts = n_parts, bytes = data.len(), "multipart upload");
                Ok(true)
            }
            Err(e) if lost_race(&condition, &e) => {
                let _ = abort(String::new());
                Ok(false)
            }
            Err(e) => Err(abort(aws::error_text(&e))),
        }
    }

    /// Reads an object with its ETag.
    fn get_with_etag(&self, key: &str) -> Result<(Vec<u8>, String)> {
        check_key(key)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        let r = aws::block_on(async move {
            let o = req.send().await.map_err(|e| {
                let nf = e.as_service_error().is_some_and(|se| se.is_no_such_key())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                (nf, aws::error_text(&e))
            })?;
            let etag = o.e_tag().unwrap_or_default().to_string();
            let body = o
                .body
                .collect()
                .await
                .map_err(|e| (false, format!("reading the body: {e}")))?;
            Ok::<_, (bool, String)>((body.into_bytes().to_vec(), etag))
        });
        r.map_err(|(nf, msg)| {
            if nf {
                StoreError::NotFound {
                    store: self.uri(),
                    key: key.to_string(),
                }
            } else {
                self.backend(key, "GetObject", msg)
            }
        })
    }

    /// HeadObject: `(size, ETag)`, or None when there is no such object.
    /// HeadObject: `(size, ETag, LastModified)`, or `None` when there is no object.
    fn head(&self, key: &str) -> Result<Option<Head>> {
        check_key(key)?;
        let req = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        match aws::block_on(async move { req.send().await }) {
            Ok(o) => Ok(Some((
                o.content_length().unwrap_or(0).max(0) as u64,
                o.e_tag().unwrap_or_default().to_string(),
                o.last_modified().and_then(utc),
            ))),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.backend(key, "HeadObject", aws::error_text(&e))),
        }
    }

    /// HeadObject's SSE fields (`(sse, kms key id, bucket key)`), for checks and tests.
    pub fn encryption_of(&self, key: &str) -> Result<(Option<String>, Option<String>, bool)> {
        let req = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        let o = aws::block_on(async move { req.send().await })
            .map_err(|e| self.backend(key, "HeadObject", aws::error_text(&e)))?;
        Ok((
            o.server_side_encryption().map(|s| s.as_str().to_string()),
            o.ssekms_key_id().map(str::to_string),
            o.bucket_key_enabled().unwrap_or(false),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    None,
    Absent,
    Version(String),
}

/// Whether a conditional write failed because its condition did not hold (nothing was
/// written): a failed precondition, or, for a replace, an object that is gone (S3 answers
/// `If-Match` on a missing key with 404).
/// What HeadObject says of an object: size (bytes), ETag, `LastModified`.
type Head = (u64, String, Option<DateTime<Utc>>);

/// An S3 timestamp (`LastModified`) as UTC; `None` when out of chrono's range.
/// One listed S3 object: its whole key, size, ETag and last modification.
pub(crate) type Listed = (String, u64, String, Option<DateTime<Utc>>);

/// Every object under `prefix` of `bucket` (ListObjectsV2, all pages); `Ok(None)` when
/// there are more than `limit` (every listed object counts). Errors: the call's text
/// ([`aws::error_text`]).
pub(crate) async fn list_objects(
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    limit: usize,
) -> std::result::Result<Option<Vec<Listed>>, String> {
    let mut out = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws::error_text(&e))?;
        for o in page.contents() {
            out.push((
                o.key().unwrap_or_default().to_string(),
                o.size().unwrap_or(0).max(0) as u64,
                o.e_tag().unwrap_or_default().to_string(),
                o.last_modified().and_then(utc),
            ));
        }
        if out.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

fn utc(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

fn lost_race<E: ProvideErrorMetadata, R>(
    condition: &Condition,
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> bool
where
    R: HasStatus + std::fmt::Debug,
{
    match condition {
        Condition::None => false,
        Condition::Absent => precondition_failed(e),
        Condition::Version(_) => {
            let code = e.as_service_error().and_then(|se| se.code());
            precondition_failed(e)
                || code == Some("NoSuchKey")
                || (code != Some("NoSuchUpload")
                    && e.raw_response().is_some_and(|r| r.status_code() == 404))
        }
    }
}

fn precondition_failed<E: ProvideErrorMetadata, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    R: HasStatus + std::fmt::Debug,
{
    if let Some(se) = e.as_service_error() {
        if matches!(
            se.code(),
            Some("PreconditionFailed") | Some("ConditionalRequestConflict")
        ) {
            return true;
        }
    }
    e.raw_response()
        .is_some_and(|r| matches!(r.status_code(), 412 | 409))
}

/// The HTTP status of a raw response (one type in practice; a trait keeps the bound short).
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl ObjectStore for S3Store {
    fn uri(&self) -> String {
        StoreUri::S3 {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
        .to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_with_etag(key).map(|(b, _)| b)
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.put_object(key, data, Condition::None).map(|_| ())
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        self.put_object(key, data, Condition::Absent)
    }

    fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.get_with_etag(key)
    }

    fn put_if_version(&self, key: &str, data: &[u8], version: &str) -> Result<bool> {
        self.put_object(key, data, Condition::Version(version.to_string()))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head(key)?.is_some())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let p = prefix.trim_matches('/');
        let full = if p.is_empty() {
            if self.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.prefix)
            }
        } else {
            check_key(p)?;
            format!("{}/", self.full_key(p))
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let r = aws::block_on(list_objects(
            self.client.clone(),
            self.bucket.clone(),
            full.clone(),
            usize::MAX,
        ))
        .map_err(|m| self.backend(&full, "ListObjectsV2", m))?
        .unwrap_or_default();
        let mut out: Vec<ObjectMeta> = r
            .into_iter()
            .filter_map(|(k, size, etag, modified)| {
                k.strip_prefix(&strip).map(|rel| ObjectMeta {
                    key: rel.to_string(),
                    size,
                    version: etag,
                    modified,
                })
            })
            .collect();
        // A key equal to the prefix itself (an object, not a folder) is listed too.
        if !p.is_empty() && out.is_empty() {
            if let Some((size, etag, modified)) = self.head(p)? {
                out.push(ObjectMeta {
                    key: p.to_string(),
                    size,
                    version: etag,
                    modified,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        aws::block_on(async move { req.send().await })
            .map(|_| ())
            .map_err(|e| self.backend(key, "DeleteObject", aws::error_text(&e)))
    }

    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let objs = self.list(prefix)?;
        for batch in objs.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = batch
                .iter()
                .filter_map(|o| {
                    ObjectIdentifier::builder()
                        .key(self.full_key(&o.key))
                        .build()
                        .ok()
                })
                .collect();
            let del = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| self.backend(prefix, "DeleteObjects", e.to_string()))?;
            let req = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(del);
            let out = aws::block_on(async move { req.send().await })
                .map_err(|e| self.backend(prefix, "DeleteObjects", aws::error_text(&e)))?;
            if let Some(e) = out.errors().first() {
                return Err(self.backend(
                    e.key().unwrap_or(prefix),
                    "DeleteObjects",
                    format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{mock, Rule};

    fn store(rules: &[&Rule]) -> S3Store {
        let conf = crate::aws::mocked_config!(aws_sdk_s3, rules, 4);
        S3Store::with_client(
            Client::from_conf(conf),
            "bucket",
            "c360",
            Encryption {
                kms_key_id: Some("alias/c360".into()),
                bucket_key: true,
            },
            16 << 20,
            8 << 20,
        )
    }

    #[test]
    fn throttling_and_5xx_are_retried_and_every_put_asks_for_sse_kms() {
        let slow_down = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"#;
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| {
                r.bucket() == Some("bucket")
                    && r.key() == Some("c360/runs/j/run.json")
                    && r.server_side_encryption() == Some(&ServerSideEncryption::AwsKms)
                    && r.ssekms_key_id() == Some("alias/c360")
                    && r.bucket_key_enabled() == Some(true)
            })
            .sequence()
            .http_status(503, Some(slow_down.to_string()))
            .http_status(500, None)
            .output(|| PutObjectOutput::builder().build())
            .build();
        let s = store(&[&put]);
        s.put("runs/j/run.json", b"{}").unwrap();
        assert_eq!(put.num_calls(), 3);
    }

    #[test]
    fn a_failed_precondition_is_a_lost_race_not_an_error() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"#;
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| r.if_none_match() == Some("*"))
            .sequence()
            .http_status(412, Some(body.to_string()))
            .build();
        let s = store(&[&put]);
        assert!(!s.put_if_absent("products/p/latest.json", b"{}").unwrap());
        let get = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .http_status(404, Some(r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"#.to_string()))
            .output(|| GetObjectOutput::builder().e_tag("\"abc\"").body(ByteStream::from_static(b"hi")).build())
            .build();
        let s = store(&[&get]);
        assert!(matches!(s.get("a.json"), Err(StoreError::NotFound { .. })));
        assert_eq!(
            s.get_versioned("a.json").unwrap(),
            (b"hi".to_vec(), "\"abc\"".to_string())
        );
    }

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        assert_eq!(
            parse_uri("s3://my-bucket").unwrap(),
            ("my-bucket".into(), "".into())
        );
        assert!(parse_uri("s3://My_Bucket/x").is_err());
        assert!(parse_uri("s3://b/../x").is_err());
    }
}
