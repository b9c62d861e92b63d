//! Path routing: exact paths through a hash map, patterns with `{name}` segments (and a
//! trailing `{*name}` that takes the rest of the path) by a short scan.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::{AsyncHandler, Handler, SyncHandler};
use crate::http::{Method, MAX_PARAMS_PUB as MAX_PARAMS};

/// A route an app registers.
#[derive(Clone, Copy)]
pub struct Route {
    /// The method (a GET route also answers HEAD).
    pub method: Method,
    /// `/plain`, `/bytes/{n}`, `/wiki/{*title}`.
    pub pattern: &'static str,
    /// The handler.
    pub handler: Handler,
}

impl Route {
    /// A route to a sync handler.
    pub const fn sync(method: Method, pattern: &'static str, h: SyncHandler) -> Route {
        Route { method, pattern, handler: Handler::Sync(h) }
    }

    /// A route to an async handler.
    pub const fn asynchronous(method: Method, pattern: &'static str, h: AsyncHandler) -> Route {
        Route { method, pattern, handler: Handler::Async(h) }
    }
}

/// A route that cannot be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// Same method and pattern registered twice.
    #[error("route {method} {pattern} is registered twice")]
    Duplicate {
        /// Method.
        method: &'static str,
        /// Pattern.
        pattern: &'static str,
    },
    /// The pattern does not start with `/`, has an empty or unclosed `{}`, more than four
    /// parameters, or `{*rest}` not at the end.
    #[error("bad route pattern {0:?}")]
    BadPattern(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Lit(&'static str),
    Param(&'static str),
    Rest(&'static str),
}

/// The handlers of one path pattern by method, and the pattern's label index.
#[derive(Default)]
struct Methods {
    label: u16,
    handlers: Vec<(Method, Handler)>,
}

/// The route label of requests no pattern matched (404, 405) or refused before
/// routing: index 0 of [`Router::labels`].
pub const NO_ROUTE: &str = "(none)";

/// The result of routing one request.
pub enum Routed<'p> {
    /// A handler and the path parameters it gets.
    Found {
        /// The handler.
        handler: Handler,
        /// (name, raw value) pairs.
        params: [(&'static str, &'p str); MAX_PARAMS],
        /// How many of `params` are set.
        n_params: usize,
        /// The pattern's index in [`Router::labels`] (for per-route figures).
        route: u16,
    },
    /// The path exists for other methods: the `Allow` value.
    MethodNotAllowed(String),
    /// No route has this path.
    NotFound,
}

/// FNV-1a for the exact-path table. The table holds only the routes the apps register at
/// start, so request paths (chosen by clients) can only be looked up, never inserted: no
/// key is needed against flooding, and SipHash's cost (about 110 instructions a lookup
/// of `/plaintext`, scripts/profile.sh) buys nothing here.
#[derive(Clone, Copy)]
struct PathHasher(u64);

impl Default for PathHasher {
    fn default() -> Self {
        PathHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// All routes of all apps.
pub struct Router {
    exact: HashMap<&'static str, Methods, BuildHasherDefault<PathHasher>>,
    patterns: Vec<(Vec<Seg>, Methods)>,
    /// Every registered pattern once, in order, after [`NO_ROUTE`].
    labels: Vec<&'static str>,
}

impl Default for Router {
    fn default() -> Self {
        Router { exact: HashMap::default(), patterns: Vec::new(), labels: vec![NO_ROUTE] }
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// The route labels: [`NO_ROUTE`], then each registered pattern once.
    pub fn labels(&self) -> &[&'static str] {
        &self.labels
    }

    /// Registers `route`.
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let segs = parse_pattern(route.pattern)?;
        let methods = if segs.iter().all(|s| matches!(s, Seg::Lit(_))) {
            self.exact.entry(route.pattern).or_default()
        } else if let Some(i) = self.patterns.iter().position(|(s, _)| *s == segs) {
            &mut self.patterns[i].1
        } else {
            self.patterns.push((segs, Methods::default()));
            &mut self.patterns.last_mut().expect("just pushed").1
        };
        if methods.handlers.iter().any(|(m, _)| *m == route.method) {
            return Err(RouteError::Duplicate { method: route.method.as_str(), pattern: route.pattern });
        }
        if methods.handlers.is_empty() {
            methods.label = u16::try_from(self.labels.len()).unwrap_or(u16::MAX);
            self.labels.push(route.pattern);
        }
        methods.handlers.push((route.method, route.handler));
        Ok(())
    }

    /// Finds the handler for `method` on `path` (HEAD falls back to GET).
    pub fn route<'p>(&self, method: Method, path: &'p str) -> Routed<'p> {
        let mut params = [("", ""); MAX_PARAMS];
        let (methods, n_params) = match self.exact.get(path) {
            Some(m) => (m, 0),
            None => match self.patterns.iter().find_map(|(segs, m)| Some((m, match_segs(segs, path, &mut params)?))) {
                Some(found) => found,
                None => return Routed::NotFound,
            },
        };
        let pick = |want: Method| methods.handlers.iter().find(|(m, _)| *m == want).map(|(_, h)| *h);
        let handler = pick(method).or_else(|| if method == Method::Head { pick(Method::Get) } else { None });
        match handler {
            Some(handler) => Routed::Found { handler, params, n_params, route: methods.label },
            None => Routed::MethodNotAllowed(allow_value(methods)),
        }
    }
}

fn allow_value(methods: &Methods) -> String {
    let mut names: Vec<&str> = methods.handlers.iter().map(|(m, _)| m.as_str()).collect();
    if names.contains(&"GET") && !names.contains(&"HEAD") {
        names.push("HEAD");
    }
    names.join(", ")
}

fn parse_pattern(p: &'static str) -> Result<Vec<Seg>, RouteError> {
    let Some(body) = p.strip_prefix('/') else { return Err(RouteError::BadPattern(p)) };
    let mut segs = Vec::new();
    for part in body.split('/') {
        let seg = match part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if name.starts_with('*') && name.len() > 1 => Seg::Rest(&name[1..]),
            Some(name) if !name.is_empty() && !name.contains(['{', '}', '*']) => Seg::Param(name),
            Some(_) => return Err(RouteError::BadPattern(p)),
            None if part.contains(['{', '}']) => return Err(RouteError::BadPattern(p)),
            None => Seg::Lit(part),
        };
        if matches!(segs.last(), Some(Seg::Rest(_))) {
            return Err(RouteError::BadPattern(p));
        }
        segs.push(seg);
    }
    let n_params = segs.iter().filter(|s| !matches!(s, Seg::Lit(_))).count();
    if n_params > MAX_PARAMS {
        return Err(RouteError::BadPattern(p));
    }
    Ok(segs)
}

fn match_segs<'p>(segs: &[Seg], path: &'p str, params: &mut [(&'static str, &'p str); MAX_PARAMS]) -> Option<usize> {
    let mut rest = path.strip_prefix('/')?;
    let mut n = 0;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if let Seg::Rest(name) = seg {
            if rest.is_empty() {
                return None;
            }
            params[n] = (name, rest);
            return Some(n + 1);
        }
        let (part, tail) = match rest.split_once('/') {
            Some((part, tail)) if !last => (part, tail),
            Some(_) => return None,
            None if last => (rest, ""),
            None => return None,
        };
        match seg {
            Seg::Lit(l) if *l == part => {}
            Seg::Param(name) if !part.is_empty() => {
                params[n] = (name, part);
                n += 1;
            }
            _ => return None,
        }
        rest = tail;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Ctx, HandlerError, Reply};
    use crate::http::{Request, Response};

    fn h1<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
        Ok(Response::text(200, "1").into())
    }
    fn h2<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
        Ok(Response::text(200, "2").into())
    }

    fn router() -> Router {
        let mut r = Router::new();
        r.add(Route { method: Method::Get, pattern: "/plaintext", handler: Handler::Sync(h1) }).unwrap();
        r.add(Route { method: Method::Get, pattern: "/bytes/{n}", handler: Handler::Sync(h1) }).unwrap();
        r.add(Route { method: Method::Post, pattern: "/bytes/{n}", handler: Handler::Sync(h2) }).unwrap();
        r.add(Route { method: Method::Get, pattern: "/wiki/{*title}", handler: Handler::Sync(h2) }).unwrap();
        r.add(Route { method: Method::Get, pattern: "/a/{x}/b/{y}", handler: Handler::Sync(h2) }).unwrap();
        r
    }

    #[test]
    fn exact_params_and_rest() {
        let r = router();
        assert!(matches!(r.route(Method::Get, "/plaintext"), Routed::Found { n_params: 0, .. }));
        match r.route(Method::Get, "/bytes/42") {
            Routed::Found { params, n_params: 1, .. } => assert_eq!(params[0], ("n", "42")),
            _ => panic!("no match"),
        }
        match r.route(Method::Get, "/wiki/AC/DC") {
            Routed::Found { params, n_params: 1, .. } => assert_eq!(params[0], ("title", "AC/DC")),
            _ => panic!("no match"),
        }
        match r.route(Method::Head, "/a/1/b/2") {
            Routed::Found { params, n_params: 2, .. } => assert_eq!(&params[..2], &[("x", "1"), ("y", "2")]),
            _ => panic!("no match"),
        }
        for miss in ["/bytes/", "/bytes", "/bytes/1/2", "/wiki/", "/nope", "", "/a/1/b"] {
            assert!(matches!(r.route(Method::Get, miss), Routed::NotFound), "{miss}");
        }
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let r = router();
        match r.route(Method::Delete, "/bytes/1") {
            Routed::MethodNotAllowed(allow) => assert_eq!(allow, "GET, POST, HEAD"),
            _ => panic!(),
        }
        match r.route(Method::Post, "/plaintext") {
            Routed::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD"),
            _ => panic!(),
        }
    }

    #[test]
    fn bad_patterns_and_duplicates() {
        let mut r = router();
        for p in ["nope", "/{}", "/{*rest}/x", "/{a", "/{a}/{b}/{c}/{d}/{e}"] {
            assert_eq!(
                r.add(Route { method: Method::Get, pattern: p, handler: Handler::Sync(h1) }),
                Err(RouteError::BadPattern(p))
            );
        }
        assert!(matches!(
            r.add(Route { method: Method::Get, pattern: "/plaintext", handler: Handler::Sync(h2) }),
            Err(RouteError::Duplicate { .. })
        ));
    }
}
