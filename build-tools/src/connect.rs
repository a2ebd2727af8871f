//! Our Connect service generator: per service, a typed client and a server trait with a
//! router constructor, both written against `e2b_envd::codegen` only.

use std::fmt::Write as _;

use heck::ToSnakeCase as _;
use prost_build::{Comments, Method, Service, ServiceGenerator};

/// Emits `<service>_client` and `<service>_server` modules into each package's file.
pub(crate) struct ConnectGenerator;

impl ServiceGenerator for ConnectGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        client(&service, buf);
        server(&service, buf);
    }
}

/// The kind of a method, from its streaming flags.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStreaming,
    ClientStreaming,
    BidiStreaming,
}

fn kind(method: &Method) -> Kind {
    match (method.client_streaming, method.server_streaming) {
        (false, false) => Kind::Unary,
        (false, true) => Kind::ServerStreaming,
        (true, false) => Kind::ClientStreaming,
        (true, true) => Kind::BidiStreaming,
    }
}

/// `/process.Process/Start`
fn route(service: &Service, method: &Method) -> String {
    format!(
        "/{}.{}/{}",
        service.package, service.proto_name, method.proto_name
    )
}

/// The proto comments as rustdoc lines, or `fallback` when there are none.
fn doc(comments: &Comments, fallback: &str, indent: &str, buf: &mut String) {
    let lines: Vec<&str> = comments
        .leading
        .iter()
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    if lines.iter().all(|line| line.trim().is_empty()) {
        let _ = writeln!(buf, "{indent}/// {fallback}");
        return;
    }
    for line in lines {
        let _ = writeln!(buf, "{indent}/// {}", line.trim_end());
    }
}

fn client(service: &Service, buf: &mut String) {
    let module = format!("{}_client", service.name.to_snake_case());
    let client = format!("{}Client", service.name);
    let full_name = format!("{}.{}", service.package, service.proto_name);
    let _ = writeln!(buf, "/// The client of the `{full_name}` service.");
    let _ = writeln!(buf, "#[cfg(feature = \"client\")]");
    let _ = writeln!(buf, "pub mod {module} {{");
    let _ = writeln!(buf, "use crate::codegen::*;");
    doc(&service.comments, &format!("Calls `{full_name}`."), "", buf);
    let _ = writeln!(buf, "#[derive(Debug, Clone)]");
    let _ = writeln!(buf, "pub struct {client} {{ inner: Client }}");
    let _ = writeln!(buf, "impl {client} {{");
    let _ = writeln!(
        buf,
        "/// A client that sends its calls through `client`.\npub fn new(client: Client) -> Self {{ Self {{ inner: client }} }}"
    );
    for method in &service.methods {
        let (input, output, path) = (
            &method.input_type,
            &method.output_type,
            route(service, method),
        );
        doc(&method.comments, &format!("Calls `{path}`."), "", buf);
        let name = &method.name;
        let _ = match kind(method) {
            Kind::Unary => writeln!(
                buf,
                "pub async fn {name}(&self, request: impl IntoRequest<super::{input}>) -> Result<super::{output}, ConnectError> {{
                    self.inner.unary(\"{path}\", request.into_request()).await
                }}"
            ),
            Kind::ServerStreaming => writeln!(
                buf,
                "pub async fn {name}(&self, request: impl IntoRequest<super::{input}>) -> Result<Streaming<super::{output}>, ConnectError> {{
                    self.inner.server_streaming(\"{path}\", request.into_request()).await
                }}"
            ),
            Kind::ClientStreaming => writeln!(
                buf,
                "pub async fn {name}(&self, request: impl IntoStreamingRequest<Message = super::{input}>) -> Result<super::{output}, ConnectError> {{
                    self.inner.client_streaming(\"{path}\", request.into_streaming_request()).await
                }}"
            ),
            Kind::BidiStreaming => {
                panic!("{path}: bidirectional streaming is not supported over HTTP/1.1 Connect")
            }
        };
    }
    let _ = writeln!(buf, "}}\n}}");
}

fn server(service: &Service, buf: &mut String) {
    let module = format!("{}_server", service.name.to_snake_case());
    let trait_name = &service.name;
    let server = format!("{}Server", service.name);
    let full_name = format!("{}.{}", service.package, service.proto_name);
    let _ = writeln!(buf, "/// The server side of the `{full_name}` service.");
    let _ = writeln!(buf, "#[cfg(feature = \"server\")]");
    let _ = writeln!(buf, "pub mod {module} {{");
    let _ = writeln!(buf, "use crate::codegen::*;");
    let _ = writeln!(
        buf,
        "/// The service's full name.\npub const SERVICE_NAME: &str = \"{full_name}\";"
    );

    doc(
        &service.comments,
        &format!("Implements `{full_name}`."),
        "",
        buf,
    );
    let _ = writeln!(buf, "pub trait {trait_name}: Send + Sync + 'static {{");
    for method in &service.methods {
        if kind(method) == Kind::ServerStreaming {
            let _ = writeln!(
                buf,
                "/// The stream [`{name}`]({trait_name}::{name}) answers with.\ntype {stream}: Stream<Item = Result<super::{output}, ConnectError>> + Send + 'static;",
                name = method.name,
                stream = stream_type(method),
                output = method.output_type,
            );
        }
    }
    for method in &service.methods {
        doc(
            &method.comments,
            &format!("Serves `{}`.", route(service, method)),
            "",
            buf,
        );
        let (name, input, output) = (&method.name, &method.input_type, &method.output_type);
        let (request, response) = match kind(method) {
            Kind::Unary => (format!("super::{input}"), format!("super::{output}")),
            Kind::ServerStreaming => (
                format!("super::{input}"),
                format!("Self::{}", stream_type(method)),
            ),
            Kind::ClientStreaming => (
                format!("Streaming<super::{input}>"),
                format!("super::{output}"),
            ),
            Kind::BidiStreaming => unreachable!("rejected when generating the client"),
        };
        let _ = writeln!(
            buf,
            "fn {name}(&self, request: Request<{request}>) -> impl Future<Output = Result<{response}, ConnectError>> + Send;"
        );
    }
    let _ = writeln!(buf, "}}");

    let _ = writeln!(
        buf,
        "/// Serves a [`{trait_name}`] implementation over Connect, as an axum [`Router`].
        #[derive(Debug)]
        pub struct {server}<T> {{ inner: Arc<T>, config: ServerConfig }}
        impl<T: {trait_name}> {server}<T> {{
            /// Serves `service`.
            pub fn new(service: T) -> Self {{ Self::from_arc(Arc::new(service)) }}
            /// Serves a shared `service`.
            pub fn from_arc(service: Arc<T>) -> Self {{ Self {{ inner: service, config: ServerConfig::default() }} }}
            /// The largest request message accepted; 64 MiB by default.
            #[must_use]
            pub fn max_message_size(mut self, bytes: usize) -> Self {{ self.config.max_message_size = bytes; self }}
            /// The routes of every method; any other method of the service answers `unimplemented`.
            pub fn into_router(self) -> Router {{
                let config = Arc::new(self.config);
                Router::new()"
    );
    for method in &service.methods {
        let (name, input, path) = (&method.name, &method.input_type, route(service, method));
        let (function, request) = match kind(method) {
            Kind::Unary => ("unary_route", format!("super::{input}")),
            Kind::ServerStreaming => ("server_streaming_route", format!("super::{input}")),
            Kind::ClientStreaming => (
                "client_streaming_route",
                format!("Streaming<super::{input}>"),
            ),
            Kind::BidiStreaming => unreachable!("rejected when generating the client"),
        };
        let _ = writeln!(
            buf,
            ".route(\"{path}\", {function}(self.inner.clone(), config.clone(), |service: Arc<T>, request: Request<{request}>| async move {{ service.{name}(request).await }}))"
        );
    }
    let _ = writeln!(
        buf,
        ".route(\"/{full_name}/{{*method}}\", unimplemented_route(SERVICE_NAME))
            }}
        }}
        }}"
    );
}

/// `StartStream` for `Start`.
fn stream_type(method: &Method) -> String {
    format!("{}Stream", method.proto_name)
}
