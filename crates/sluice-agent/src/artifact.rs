//! Artifacts: when the payload of a desired version has `url` and `sha256`,
//! the agent downloads the file before it applies, verifies its digest, and
//! hands its path to `apply_cmd` as `SLUICE_ARTIFACT`.
//!
//! The download goes through the agent's own HTTP client (its TLS trust:
//! the system's roots and `ca_file`; never its token), bounded by the
//! component's `timeout` and by `artifact_max_size`, into a temporary file
//! in `artifact_dir`, hashed while it is written, and renamed to its cached
//! name (`SHA256-NAME`, NAME the URL's last path segment, so that the file
//! keeps its extension) only once its digest is the one the payload names.
//! A cached artifact is hashed again before it is used, and reused when it
//! is intact. Before each download the cache keeps only the artifacts the
//! agent's desired versions name; it removes only files named as it names
//! them, so a directory shared by mistake loses nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::ops::Failure;

/// Where artifacts are kept unless `artifact_dir` says otherwise.
pub const DEFAULT_ARTIFACT_DIR: &str = "/var/cache/sluice-agent";
/// The largest artifact downloaded unless `artifact_max_size` says
/// otherwise: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// How a download in progress is named in the cache (then its digest).
const PARTIAL: &str = ".partial-";

/// Where artifacts are downloaded to, and how large one may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The cache directory (created, mode 0700, when missing).
    pub dir: PathBuf,
    /// The largest artifact downloaded, in bytes.
    pub max_size: u64,
}

/// An artifact a payload names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub url: String,
    /// The SHA-256 of its bytes, 64 lowercase hexadecimal digits.
    pub sha256: String,
}

impl Artifact {
    /// The artifact `payload` names: `Ok(None)` unless it is an object
    /// with both `url` and `sha256`; `Err` when either is malformed.
    pub fn of(payload: Option<&serde_json::Value>) -> Result<Option<Artifact>, Failure> {
        let Some(payload) = payload.and_then(serde_json::Value::as_object) else {
            return Ok(None);
        };
        let (Some(url), Some(sha256)) = (payload.get("url"), payload.get("sha256")) else {
            return Ok(None);
        };
        let Some(url) = url.as_str().map(str::trim).filter(|url| !url.is_empty()) else {
            return Err(format!(
                "the payload's url is {url}, not the URL of the artifact to download"
            ));
        };
        let digest = sha256.as_str().map(|text| text.trim().to_ascii_lowercase());
        match digest {
            Some(digest) if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(Artifact {
                    url: url.to_owned(),
                    sha256: digest,
                }))
            }
            _ => Err(format!(
                "the payload's sha256 is {sha256}, not 64 hexadecimal digits (the artifact's SHA-256)"
            )),
        }
    }

    /// Its name in the cache: `SHA256-NAME`, NAME the last segment of the
    /// URL's path (letters, digits, `.`, `_`, `+`, `-`; at most 100).
    fn file_name(&self) -> String {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        let name: String = last
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
            .take(100)
            .collect();
        match name.trim_start_matches('.') {
            "" => format!("{}-artifact", self.sha256),
            name => format!("{}-{name}", self.sha256),
        }
    }
}

impl Artifacts {
    /// The path of `artifact`, verified: the cached copy when it is intact,
    /// else downloaded through `client` within `timeout`. The cache keeps
    /// only the artifacts whose digests are in `keep` (and this one).
    pub async fn fetch(
        &self,
        client: &Client,
        artifact: &Artifact,
        timeout: Duration,
        keep: &BTreeSet<String>,
    ) -> Result<PathBuf, Failure> {
        let dir = &self.dir;
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(dir).await.map_err(|error| {
            format!(
                "cannot create the artifact directory {}: {error}",
                dir.display()
            )
        })?;
        self.clean(keep, &artifact.sha256).await;
        let path = dir.join(artifact.file_name());
        match sha256_of(&path).await {
            Ok(digest) if digest == artifact.sha256 => {
                tracing::info!(path = %path.display(), "using the verified artifact in the cache");
                return Ok(path);
            }
            Ok(digest) => {
                tracing::warn!(path = %path.display(), %digest, expected = %artifact.sha256, "a cached artifact no longer has its digest; downloading it again");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), "cannot read a cached artifact ({error}); downloading it again");
            }
        }
        let partial = dir.join(format!("{PARTIAL}{}", artifact.sha256));
        let result = self.download(client, artifact, timeout, &partial).await;
        let renamed = match result {
            Ok(()) => tokio::fs::rename(&partial, &path).await.map_err(|error| {
                format!(
                    "cannot move the verified artifact to {}: {error}",
                    path.display()
                )
            }),
            Err(error) => Err(error),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        renamed.map(|()| path)
    }

    /// Downloads `artifact` to `partial`, hashing it as it is written; `Ok`
    /// when it is complete, within the size cap and has its digest.
    async fn download(
        &self,
        client: &Client,
        artifact: &Artifact,
        timeout: Duration,
        partial: &Path,
    ) -> Result<(), Failure> {
        let mut download = client
            .download(&artifact.url, timeout)
            .await
            .map_err(|error| error.to_string())?;
        // Without the password the URL may carry.
        let url = download.url().to_owned();
        tracing::info!(%url, "downloading the artifact");
        let too_large = |size: u64| {
            format!(
                "{url} is larger than artifact_max_size ({size} bytes, at most {} allowed)",
                self.max_size
            )
        };
        if let Some(length) = download.content_length() {
            if length > self.max_size {
                return Err(too_large(length));
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(partial)
            .await
            .map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        loop {
            // The client's timeout bounds the body too.
            let chunk = download.chunk().await.map_err(|error| error.to_string())?;
            let Some(chunk) = chunk else { break };
            size = size.saturating_add(chunk.len() as u64);
            if size > self.max_size {
                return Err(too_large(size));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
        }
        file.sync_all()
            .await
            .map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
        let digest = hex::encode(hasher.finalize());
        if digest != artifact.sha256 {
            return Err(format!(
                "the artifact downloaded from {url} ({size} bytes) has the sha256 {digest}, not {} as the payload says",
                artifact.sha256
            ));
        }
        tracing::info!(%url, size, sha256 = %digest, "downloaded and verified the artifact");
        Ok(())
    }

    /// Removes from the cache every artifact named as this module names
    /// them whose digest is neither in `keep` nor `current`, and every
    /// download left unfinished.
    async fn clean(&self, keep: &BTreeSet<String>, current: &str) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.starts_with(PARTIAL) {
                true
            } else {
                match cached_digest(&name) {
                    Some(digest) => digest != current && !keep.contains(digest),
                    None => false,
                }
            };
            if stale {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => {
                        tracing::info!(path = %entry.path().display(), "removed an artifact no desired version names")
                    }
                    Err(error) => {
                        tracing::warn!(path = %entry.path().display(), "cannot remove an old artifact: {error}")
                    }
                }
            }
        }
    }
}

/// The digest a cached artifact's name starts with (`SHA256-…`), if it is
/// named so.
fn cached_digest(name: &str) -> Option<&str> {
    let digest = name.get(..64)?;
    let named = digest
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && name.as_bytes().get(64) == Some(&b'-');
    named.then_some(digest)
}

/// The SHA-256 of the file at `path`, in lowercase hexadecimal.
async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// A size such as `512MiB`, `2GiB`, `100MB` or `1048576` (bytes): whole
/// numbers, with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
/// (powers of 1024); at least one byte.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .filter(|size| *size > 0)
        .ok_or_else(|| {
            format!("{text:?} is not a size; write a whole number of bytes with a unit, such as 512MiB, 2GiB or 100MB")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;
    use sluice_testkit::FileServer;

    fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn artifact(server: &FileServer, name: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            url: server.url(name),
            sha256: digest(bytes),
        }
    }

    fn client() -> Client {
        Client::new("http://127.0.0.1:1").expect("a client")
    }

    fn cache(dir: &Path, max_size: u64) -> Artifacts {
        Artifacts {
            dir: dir.join("cache"),
            max_size,
        }
    }

    /// The names in the cache, sorted.
    fn listing(artifacts: &Artifacts) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&artifacts.dir)
            .expect("the cache")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn payloads_name_an_artifact_with_a_url_and_a_sha256() {
        let sha = "AB".repeat(32);
        let named = Artifact::of(Some(&json!({"url": " http://r/a.deb ", "sha256": sha})));
        assert_eq!(
            named,
            Ok(Some(Artifact {
                url: "http://r/a.deb".to_owned(),
                sha256: "ab".repeat(32),
            }))
        );
        for nothing in [
            None,
            Some(json!("text")),
            Some(json!({"url": "http://r/a.deb"})),
            Some(json!({"sha256": sha})),
        ] {
            assert_eq!(Artifact::of(nothing.as_ref()), Ok(None), "{nothing:?}");
        }
        let error = Artifact::of(Some(&json!({"url": "http://r/a.deb", "sha256": "abc"})))
            .expect_err("a short digest");
        assert!(error.contains("not 64 hexadecimal digits"), "{error}");
        let error = Artifact::of(Some(&json!({"url": 7, "sha256": sha}))).expect_err("no URL");
        assert!(error.contains("the payload's url is 7"), "{error}");
    }

    #[test]
    fn cached_names_keep_the_urls_last_segment() {
        let sha = "0f".repeat(32);
        let name = |url: &str| {
            Artifact {
                url: url.to_owned(),
                sha256: sha.clone(),
            }
            .file_name()
        };
        assert_eq!(
            name("https://repo/pool/docker-ce_17.03.1~ce-0_amd64.deb?token=x"),
            format!("{sha}-docker-ce_17.03.1ce-0_amd64.deb")
        );
        assert_eq!(name("https://repo/"), format!("{sha}-artifact"));
        assert_eq!(name("https://repo/..%2F.."), format!("{sha}-2F.."));
        assert_eq!(cached_digest(&name("https://repo/a")), Some(sha.as_str()));
        assert_eq!(cached_digest("notes.txt"), None);
    }

    #[test]
    fn sizes_have_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "0", "1.5GiB", "2gb", "GiB", "99999999999TiB"] {
            let error = parse_size(bad).expect_err(bad);
            assert!(error.contains("is not a size"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_download_is_verified_then_kept_and_reused() {
        let server = FileServer::start().await;
        let body = b"the package, version 2.0".to_vec();
        server.put("app_2.0.deb", body.clone());
        let dir = tempfile::tempdir().expect("temp dir");
        let artifacts = cache(dir.path(), 1024);
        let wanted = artifact(&server, "app_2.0.deb", &body);
        let path = artifacts
            .fetch(&client(), &wanted, TIMEOUT, &BTreeSet::new())
            .await
            .expect("downloaded");
        assert_eq!(std::fs::read(&path).expect("the artifact"), body);
        assert_eq!(
            listing(&artifacts),
            [format!("{}-app_2.0.deb", wanted.sha256)]
        );
        let again = artifacts
            .fetch(&client(), &wanted, TIMEOUT, &BTreeSet::new())
            .await
            .expect("reused");
        assert_eq!(again, path);
        assert_eq!(server.requests("app_2.0.deb"), 1, "the cache answered");
        // A cached copy that no longer has its digest is downloaded again.
        std::fs::write(&path, b"tampered").expect("writing");
        artifacts
            .fetch(&client(), &wanted, TIMEOUT, &BTreeSet::new())
            .await
            .expect("downloaded again");
        assert_eq!(std::fs::read(&path).expect("the artifact"), body);
        assert_eq!(server.requests("app_2.0.deb"), 2);
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
        };
        assert_eq!(mode(&artifacts.dir) & 0o777, 0o700);
    }

    #[tokio::test]
    async fn a_mismatch_a_missing_file_or_an_oversized_one_leaves_nothing() {
        let server = FileServer::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let artifacts = cache(dir.path(), 16);
        server.put("app_2.0.deb", b"not what was bui".to_vec());
        let mut wanted = artifact(&server, "app_2.0.deb", b"what was built");
        let error = artifacts
            .fetch(&client(), &wanted, TIMEOUT, &BTreeSet::new())
            .await
            .expect_err("a mismatch");
        assert!(
            error.contains(&format!(
                "(16 bytes) has the sha256 {}, not {} as the payload says",
                digest(b"not what was bui"),
                wanted.sha256
            )),
            "{error}"
        );
        assert!(listing(&artifacts).is_empty(), "{:?}", listing(&artifacts));

        wanted.url = server.url("missing.deb");
        let error = artifacts
            .fetch(&client(), &wanted, TIMEOUT, &BTreeSet::new())
            .await
            .expect_err("a 404");
        assert_eq!(
            error,
            format!(
                "cannot download {}: the server answered HTTP 404",
                wanted.url
            )
        );

        // Too large: said up front, or found while reading.
        let big = vec![7u8; 17];
        server.put("big.deb", big.clone());
        server.put_unsized("big-unsized.deb", big.clone());
        for name in ["big.deb", "big-unsized.deb"] {
            let error = artifacts
                .fetch(
                    &client(),
                    &artifact(&server, name, &big),
                    TIMEOUT,
                    &BTreeSet::new(),
                )
                .await
                .expect_err("too large");
            assert!(
                error.contains("is larger than artifact_max_size (17 bytes, at most 16 allowed)"),
                "{error}"
            );
        }
        assert!(listing(&artifacts).is_empty(), "{:?}", listing(&artifacts));
    }

    #[tokio::test]
    async fn the_cache_keeps_what_desired_versions_name_and_nothing_else_of_its_own() {
        let server = FileServer::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let artifacts = cache(dir.path(), 1024);
        let versions: Vec<(String, Vec<u8>)> = ["1.0", "2.0", "3.0"]
            .iter()
            .map(|v| (format!("app_{v}.deb"), format!("app {v}").into_bytes()))
            .collect();
        for (name, body) in &versions {
            server.put(name, body.clone());
        }
        let wanted: Vec<Artifact> = versions
            .iter()
            .map(|(name, body)| artifact(&server, name, body))
            .collect();
        // Another component wants 1.0 all along.
        let keep = BTreeSet::from([wanted[0].sha256.clone()]);
        for one in &wanted[..2] {
            artifacts
                .fetch(&client(), one, TIMEOUT, &keep)
                .await
                .expect("downloaded");
        }
        assert_eq!(listing(&artifacts).len(), 2);
        std::fs::write(artifacts.dir.join(".partial-leftover"), b"x").expect("writing");
        std::fs::write(artifacts.dir.join("notes.txt"), b"not ours").expect("writing");
        // Nothing wants 2.0 any more.
        artifacts
            .fetch(&client(), &wanted[2], TIMEOUT, &keep)
            .await
            .expect("downloaded");
        let mut expected = vec![
            format!("{}-app_1.0.deb", wanted[0].sha256),
            format!("{}-app_3.0.deb", wanted[2].sha256),
            "notes.txt".to_owned(),
        ];
        expected.sort();
        assert_eq!(listing(&artifacts), expected);
    }
}
