//! How the OTLP settings come from the builder and the environment (an environment of the
//! test's own: the process's is never changed), and what `build` refuses.

use std::collections::HashMap;
use std::time::Duration;

use super::exporter::{Settings, Tls};
use super::{OtlpBuilder, OtlpProtocol, otlp};
use crate::ErrorCode;

/// A PEM block `pem_slice_iter` reads (its DER is only parsed when a connection uses it).
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn resolve(builder: &OtlpBuilder, env: &[(&str, &str)]) -> crate::Result<Settings> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::resolve(builder, &|var| env.get(var).cloned())
}

fn settings(builder: &OtlpBuilder, env: &[(&str, &str)]) -> Settings {
    resolve(builder, env).unwrap()
}

fn refused(builder: &OtlpBuilder, env: &[(&str, &str)]) -> String {
    let e = resolve(builder, env).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigInvalid, "{e}");
    e.to_string()
}

#[test]
fn defaults_follow_the_specification_per_protocol() {
    let http = settings(&otlp(), &[]);
    assert_eq!(http.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(http.endpoint, "http://localhost:4318/v1/traces");
    assert_eq!(http.tls, Tls::Off);
    assert_eq!(http.timeout, Duration::from_secs(10));

    let grpc = settings(&otlp().protocol(OtlpProtocol::Grpc), &[]);
    assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
    assert_eq!(grpc.endpoint, "http://localhost:4317");
}

#[test]
fn the_protocol_comes_from_the_builder_then_the_traces_variable_then_the_general_one() {
    let grpc = settings(&otlp(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
    assert_eq!(grpc.endpoint, "http://localhost:4317");

    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
    ];
    assert_eq!(settings(&otlp(), &env).protocol, OtlpProtocol::HttpProtobuf);
    let builder = otlp().protocol(OtlpProtocol::Grpc);
    assert_eq!(settings(&builder, &env).protocol, OtlpProtocol::Grpc);
    // Empty is unset.
    let empty = [("OTEL_EXPORTER_OTLP_PROTOCOL", "")];
    assert_eq!(
        settings(&otlp(), &empty).protocol,
        OtlpProtocol::HttpProtobuf
    );
}

#[test]
fn unknown_and_unsupported_protocols_are_refused_by_name() {
    let e = refused(&otlp(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
    assert!(
        e.contains("http/json") && e.contains("not supported"),
        "{e}"
    );
    let e = refused(&otlp(), &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")]);
    assert!(
        e.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") && e.contains("thrift"),
        "{e}"
    );
}

#[test]
fn base_urls_get_the_traces_path_over_http_only() {
    let base = otlp().endpoint("http://collector:4318/");
    assert_eq!(
        settings(&base, &[]).endpoint,
        "http://collector:4318/v1/traces"
    );
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
    assert_eq!(
        settings(&otlp(), &env).endpoint,
        "http://collector:4318/v1/traces"
    );
    let grpc = otlp().protocol(OtlpProtocol::Grpc);
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")];
    assert_eq!(settings(&grpc, &env).endpoint, "http://collector:4317");
    // The traces variable is the full URL; the builder wins over both.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom",
        ),
    ];
    assert_eq!(
        settings(&otlp(), &env).endpoint,
        "http://traces:4318/custom"
    );
    assert_eq!(
        settings(&base, &env).endpoint,
        "http://collector:4318/v1/traces"
    );
}

#[test]
fn endpoints_that_are_not_http_urls_are_refused() {
    for url in ["collector:4317", "ftp://collector", "not a url", "http://"] {
        let e = refused(&otlp().endpoint(url), &[]);
        assert!(e.contains("http:// or https://"), "{url}: {e}");
    }
    let e = refused(
        &otlp(),
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318")],
    );
    assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{e}");
}

#[test]
fn https_trusts_the_built_in_roots_or_the_given_ca() {
    let https = otlp().endpoint("https://collector:4318");
    assert_eq!(settings(&https, &[]).tls, Tls::BuiltInRoots);
    assert_eq!(
        settings(&https.clone().tls_ca_cert(PEM), &[]).tls,
        Tls::Ca(PEM.as_bytes().to_vec())
    );
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTPS://collector:4318")];
    assert_eq!(settings(&otlp(), &env).tls, Tls::BuiltInRoots);
}

#[test]
fn a_ca_is_refused_without_https_or_when_it_holds_no_certificate() {
    let e = refused(
        &otlp().endpoint("http://collector:4318").tls_ca_cert(PEM),
        &[],
    );
    assert!(e.contains("https://"), "{e}");
    let https = otlp().endpoint("https://collector:4318");
    let e = refused(&https.clone().tls_ca_cert("no certificate here"), &[]);
    assert!(e.contains("no PEM certificate"), "{e}");
    let bad = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
    let e = refused(&https.tls_ca_cert(bad), &[]);
    assert!(e.contains("do not parse"), "{e}");
}

#[test]
fn the_certificate_variables_name_a_file_read_for_https_only() {
    let path = std::env::temp_dir().join(format!("redisx-otlp-ca-{}.pem", std::process::id()));
    std::fs::write(&path, PEM).unwrap();
    let path_text = path.to_str().unwrap();
    let https = otlp().endpoint("https://collector:4318");
    let env = [("OTEL_EXPORTER_OTLP_CERTIFICATE", path_text)];
    let tls = settings(&https, &env).tls;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(tls, Tls::Ca(PEM.as_bytes().to_vec()));

    // Over http:// the variable does not apply, so a missing file is no error.
    let missing = [("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path_text)];
    assert_eq!(settings(&otlp(), &missing).tls, Tls::Off);
    let e = refused(&https, &missing);
    assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"), "{e}");
}

#[test]
fn the_timeout_comes_from_the_builder_then_the_variables_in_milliseconds() {
    let env = [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "not a number"),
    ];
    // An unreadable value is skipped, as the OpenTelemetry SDKs do.
    assert_eq!(settings(&otlp(), &env).timeout, Duration::from_millis(2500));
    let builder = otlp().timeout(Duration::from_secs(1));
    assert_eq!(settings(&builder, &env).timeout, Duration::from_secs(1));
}

#[cfg(not(feature = "otlp-grpc"))]
#[test]
fn grpc_without_its_feature_is_refused_naming_the_feature() {
    let Err(e) = otlp()
        .protocol(OtlpProtocol::Grpc)
        .build::<tracing_subscriber::Registry>()
    else {
        panic!("built a gRPC exporter without the otlp-grpc feature");
    };
    assert_eq!(e.code(), ErrorCode::ConfigInvalid);
    assert!(e.to_string().contains("`otlp-grpc` feature"), "{e}");
}

/// The gRPC exporter builds (and stops) outside any runtime and inside a current-thread one:
/// it brings its own.
#[cfg(feature = "otlp-grpc")]
#[test]
fn grpc_builds_with_or_without_a_runtime_around() {
    let build = || {
        otlp()
            .protocol(OtlpProtocol::Grpc)
            .endpoint("http://127.0.0.1:9")
            .build::<tracing_subscriber::Registry>()
            .map(|(_layer, guard)| guard)
    };
    drop(build().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = rt.block_on(async { build().unwrap() });
    rt.block_on(async move { drop(guard) });
}

#[test]
fn debug_shows_the_ca_size_not_its_text() {
    let debug = format!("{:?}", otlp().tls_ca_cert(PEM));
    assert!(
        debug.contains(&format!("{} bytes", PEM.len())) && !debug.contains("MIIB"),
        "{debug}"
    );
}
