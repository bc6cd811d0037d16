//! A small HTTP server of files, for the artifacts a payload names: the
//! agent downloads them from it in its tests. It serves `GET /NAME` from
//! what the test [put](FileServer::put) there (with a `Content-Length`, or
//! [without one](FileServer::put_unsized), the body then ending when the
//! connection closes), 404 for anything else, and counts the requests for
//! each name. One request per connection, on the runtime that started it;
//! stopped when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A file as served.
#[derive(Debug, Clone)]
struct File {
    body: Vec<u8>,
    /// Whether the answer says its length.
    sized: bool,
}

#[derive(Debug, Default)]
struct Shared {
    files: BTreeMap<String, File>,
    requests: BTreeMap<String, usize>,
}

/// The server; see the module's documentation.
#[derive(Debug)]
pub struct FileServer {
    base: String,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FileServer {
    /// A server on a free loopback port, serving nothing yet.
    pub async fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the file server");
        let address = listener.local_addr().expect("the file server's address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, Arc::clone(&serving)));
            }
        });
        FileServer {
            base: format!("http://{address}"),
            shared,
            task,
        }
    }

    /// The URL of `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Serves `body` as `name`, with its length.
    pub fn put(&self, name: &str, body: impl Into<Vec<u8>>) {
        self.insert(name, body.into(), true);
    }

    /// Serves `body` as `name` without saying its length.
    pub fn put_unsized(&self, name: &str, body: impl Into<Vec<u8>>) {
        self.insert(name, body.into(), false);
    }

    /// Stops serving `name`: it is then 404.
    pub fn remove(&self, name: &str) {
        lock(&self.shared).files.remove(name);
    }

    fn insert(&self, name: &str, body: Vec<u8>, sized: bool) {
        lock(&self.shared)
            .files
            .insert(name.to_owned(), File { body, sized });
    }

    /// How many requests for `name` came, answered or not.
    pub fn requests(&self, name: &str) -> usize {
        lock(&self.shared).requests.get(name).copied().unwrap_or(0)
    }
}

/// Reads one request's head and answers it.
async fn answer(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => head.extend_from_slice(&buffer[..count]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next(), words.next().unwrap_or("/"));
    let name = path.trim_start_matches('/').to_owned();
    let file = {
        let mut shared = lock(&shared);
        *shared.requests.entry(name.clone()).or_default() += 1;
        shared.files.get(&name).cloned()
    };
    let (status, file) = match (method, file) {
        (Some("GET"), Some(file)) => ("200 OK", file),
        _ => (
            "404 Not Found",
            File {
                body: b"not found\n".to_vec(),
                sized: true,
            },
        ),
    };
    let length = match file.sized {
        true => format!("Content-Length: {}\r\n", file.body.len()),
        false => String::new(),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n{length}Connection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_ok() {
        let _ = stream.write_all(&file.body).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: &str) -> (String, Vec<u8>) {
        let address = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let path = url
            .trim_start_matches("http://")
            .trim_start_matches(&address);
        let mut stream = TcpStream::connect(&address).await.expect("connecting");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sending");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("reading");
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        (head, answer[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn files_are_served_with_or_without_their_length_and_counted() {
        let server = FileServer::start().await;
        server.put("a.deb", b"package a".to_vec());
        server.put_unsized("b.deb", b"package b".to_vec());
        let (head, body) = get(&server.url("a.deb")).await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Length: 9"), "{head}");
        assert_eq!(body, b"package a");
        let (head, body) = get(&server.url("b.deb")).await;
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(body, b"package b");
        let (head, _) = get(&server.url("c.deb")).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert_eq!((server.requests("a.deb"), server.requests("c.deb")), (1, 1));
    }
}
