//! The app's static files (`--static <dir>`), served safely: no path may
//! leave the directory — `..`, symlinks pointing outside, and dotfiles
//! (`.env`, `.git`) are refused — and unknown paths fall back to
//! `index.html` (single-page apps route on the client).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// The file `uri_path` names under `root` (canonical), if it is a regular
/// file inside it and no segment is hidden.
pub fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(uri_path).decode_utf8().ok()?;
    let mut p = root.to_path_buf();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        p.push(seg);
    }
    let real = std::fs::canonicalize(&p).ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// Serves `req` from `root` (already canonical).
pub async fn serve(root: PathBuf, req: Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    let hidden = percent_encoding::percent_decode_str(&path).decode_utf8().map(|d| d.split('/').any(|s| s.starts_with('.') && !s.is_empty())).unwrap_or(true);
    let file = match resolve(&root, &path) {
        Some(f) => f,
        None if hidden => return (StatusCode::NOT_FOUND, "not found").into_response(),
        None => match resolve(&root, "/index.html") {
            Some(f) => f,
            None => return (StatusCode::NOT_FOUND, "not found").into_response(),
        },
    };
    match ServeFile::new(file).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("app/assets")).unwrap();
        std::fs::write(root.join("app/index.html"), "<html>").unwrap();
        std::fs::write(root.join("app/assets/a.js"), "js").unwrap();
        std::fs::write(root.join("app/.env"), "SECRET").unwrap();
        std::fs::write(root.join("secret.key"), "KEY").unwrap();
        let app = root.join("app");
        assert_eq!(resolve(&app, "/assets/a.js"), Some(app.join("assets/a.js")));
        assert_eq!(resolve(&app, "/.env"), None);
        assert_eq!(resolve(&app, "/%2e%2e/secret.key"), None);
        assert_eq!(resolve(&app, "/../secret.key"), None);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("secret.key"), app.join("key")).unwrap();
            assert_eq!(resolve(&app, "/key"), None, "a symlink leaving the directory is refused");
        }
    }
}
