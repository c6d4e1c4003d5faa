//! Dev servers that hot-update their own sources (Vite, Next.js): how a request shows that one
//! is behind the proxy, which files it updates in place itself, and what to tell a user who
//! watches those files too (each save then reloads the page right after the server's own update,
//! its state lost).
//!
//! Owns the table and the question "does this file belong to the dev server's hot updates?". It
//! does not watch for the requests (`router`) nor decide when to say it (`sse`'s hub, once per
//! framework). Also the table of other tools' live reloads a page behind the proxy may load
//! (Eleventy's, LiveReload's, MkDocs', browser-sync's), which `router` names once.

/// One dev server with hot updates of its own.
#[derive(Debug)]
pub struct Framework {
    /// For log lines: "a Vite dev server".
    pub name: &'static str,
    /// The path only its pages ask for (its HMR client or socket).
    pub marker: &'static str,
    /// How its presence was seen, for log lines.
    pub seen_by: &'static str,
    /// What to do instead of watching its sources, for log lines.
    pub fix: &'static str,
    /// The file endings it updates in place.
    updates: &'static [&'static str],
}

/// The dev servers recognised, by the index the hub keeps their state under.
pub static FRAMEWORKS: [Framework; 2] = [
    Framework {
        name: "a Vite dev server",
        marker: "/@vite/client",
        seen_by: "a page loaded /@vite/client",
        fix: "leave what Vite serves out (--ignore 'src/**') or watch only what it does not \
              (--watch templates, --watch public=/)",
        updates: &[
            ".js", ".mjs", ".ts", ".mts", ".jsx", ".tsx", ".vue", ".svelte", ".css", ".scss",
            ".sass", ".less", ".styl", ".pcss", ".astro",
        ],
    },
    Framework {
        name: "a Next.js dev server",
        marker: "/_next/webpack-hmr",
        seen_by: "a page opened its Fast Refresh socket /_next/webpack-hmr",
        fix: "watch only what it serves as plain files (--watch public=/) or leave its sources \
              out (--ignore 'app/**' --ignore 'pages/**')",
        updates: &[
            ".js", ".mjs", ".cjs", ".ts", ".mts", ".jsx", ".tsx", ".mdx", ".css", ".scss", ".sass",
        ],
    },
];

/// The framework whose pages ask for `path`, by its index in [`FRAMEWORKS`].
pub fn marked_by(path: &str) -> Option<usize> {
    FRAMEWORKS.iter().position(|f| f.marker == path)
}

/// Another tool's live reload, loaded by the pages behind the proxy: the tab then has two clients
/// that each reload it on a save (twice, and a stylesheet the proxy would swap is a reload), and
/// nothing said why. Recognised by the path its pages ask for, a prefix.
#[derive(Debug)]
pub struct Reloader {
    /// For log lines: "Eleventy's dev server".
    pub name: &'static str,
    /// The path (a prefix of it) only its pages ask for.
    pub marker: &'static str,
    /// How to have one reloader, for log lines.
    pub fix: &'static str,
}

/// The other live reloads recognised.
pub static RELOADERS: [Reloader; 4] = [
    Reloader {
        name: "Eleventy's dev server",
        marker: "/.11ty/reload-client.js",
        fix: "run `eleventy --watch` and `hmr-proxy --serve _site` in place of `eleventy --serve`",
    },
    Reloader {
        name: "a LiveReload server (Hugo's, Jekyll's --livereload, python-livereload)",
        marker: "/livereload.js",
        fix: "turn it off (`hugo server --disableLiveReload`, `jekyll serve` without \
              --livereload), or run the generator in watch mode and `hmr-proxy --serve` its \
              output folder",
    },
    Reloader {
        name: "MkDocs' dev server",
        marker: "/livereload/",
        fix: "run `mkdocs serve --no-livereload`",
    },
    Reloader {
        name: "browser-sync",
        marker: "/browser-sync/",
        fix: "put hmr-proxy in front of the dev server itself, not of browser-sync",
    },
];

/// The other live reload whose pages ask for `path`, by its index in [`RELOADERS`].
pub fn reloader_for(path: &str) -> Option<usize> {
    RELOADERS.iter().position(|r| path.starts_with(r.marker))
}

/// Folders whose files these dev servers serve as they are, never as modules: Vite's, Next.js's
/// and Astro's `public/`, SvelteKit's `static/`. A stylesheet linked from there is the proxy's to
/// swap (their READMEs say to watch exactly these).
const SERVED_AS_IS: [&str; 2] = ["public", "static"];

impl Framework {
    /// Whether a change to `path` (relative to its watched folder, whose own name is `folder`) is
    /// one this dev server updates in place itself.
    pub fn updates(&self, folder: Option<&str>, path: &str) -> bool {
        let as_is = folder
            .into_iter()
            .chain(path.split('/'))
            .any(|part| SERVED_AS_IS.contains(&part));
        !as_is && self.updates.iter().any(|ext| path.ends_with(ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_live_reloads_by_the_paths_their_pages_ask_for() {
        assert_eq!(reloader_for("/.11ty/reload-client.js"), Some(0));
        assert_eq!(reloader_for("/livereload.js"), Some(1));
        assert_eq!(reloader_for("/livereload/1712345/0"), Some(2));
        assert_eq!(
            reloader_for("/browser-sync/browser-sync-client.js"),
            Some(3)
        );
        assert_eq!(reloader_for("/js/livereload.json"), None);
        assert_eq!(reloader_for("/"), None);
    }

    #[test]
    fn what_each_updates_itself() {
        let vite = &FRAMEWORKS[0];
        let next = &FRAMEWORKS[1];
        assert_eq!(marked_by("/@vite/client"), Some(0));
        assert_eq!(marked_by("/_next/webpack-hmr"), Some(1));
        assert_eq!(marked_by("/src/main.js"), None);
        assert!(vite.updates(Some("app"), "src/main.ts"));
        assert!(vite.updates(Some("src"), "style.css"));
        assert!(!vite.updates(Some("app"), "templates/page.html"));
        // Served as they are: the folders the README says to watch.
        assert!(!vite.updates(Some("static"), "site.css"));
        assert!(!vite.updates(Some("public"), "js/plain.js"));
        assert!(!vite.updates(Some("app"), "public/site.css"));
        assert!(!vite.updates(None, "static/site.css"));
        assert!(next.updates(Some("app"), "app/counter/Counter.tsx"));
        assert!(!next.updates(Some("app"), "public/site.css"));
        assert!(!next.updates(Some("app"), "app/page.vue"));
    }
}
