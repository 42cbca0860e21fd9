//! Loading and choosing certificates, on certificates made here.

use rcgen::{CertificateParams, KeyPair, SerialNumber};

use super::{CertStore, Certificate, CertificateError, Validity};

struct Pem {
    cert: String,
    key: String,
}

fn make(name: &str, serial: u64, years: Option<(i32, i32)>) -> Pem {
    let key = KeyPair::generate().expect("test key");
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("test params");
    params.serial_number = Some(SerialNumber::from(serial));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    if let Some((from, until)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
    }
    let cert = params.self_signed(&key).expect("test certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn load(pem: &Pem, validity: Validity) -> Result<Certificate, CertificateError> {
    Certificate::from_pem(pem.cert.as_bytes(), pem.key.as_bytes(), validity)
}

#[test]
fn a_good_pair_loads_with_what_it_says_about_itself() {
    let cert = load(&make("example.test", 0x1234, None), Validity::Enforce).expect("loads");
    let info = cert.info();
    assert_eq!(info.subject, "CN=example.test");
    assert_eq!(info.serial, "12:34");
    assert!(info.not_before < info.not_after);
}

#[test]
fn each_bad_pair_gets_its_own_error() {
    let a = make("a.test", 1, None);
    let b = make("b.test", 2, None);
    let mismatched = Pem {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    assert!(matches!(
        load(&mismatched, Validity::Enforce),
        Err(CertificateError::KeyMismatch { .. })
    ));
    let no_cert = Pem {
        cert: "nothing here\n".into(),
        key: a.key.clone(),
    };
    assert!(matches!(
        load(&no_cert, Validity::Enforce),
        Err(CertificateError::NoCertificate { .. })
    ));
    let no_key = Pem {
        cert: a.cert.clone(),
        key: a.cert.clone(),
    };
    assert!(matches!(
        load(&no_key, Validity::Enforce),
        Err(CertificateError::NoKey { .. })
    ));
    let garbage = Pem {
        cert: "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n".into(),
        key: a.key.clone(),
    };
    assert!(matches!(
        load(&garbage, Validity::Enforce),
        Err(CertificateError::Pem { .. })
    ));
    let not_x509 = Pem {
        cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        key: a.key.clone(),
    };
    assert!(matches!(
        load(&not_x509, Validity::Enforce),
        Err(CertificateError::BadCertificate { .. })
    ));
}

#[test]
fn the_validity_window_is_enforced_unless_allowed() {
    let expired = make("old.test", 1, Some((2000, 2001)));
    let future = make("new.test", 2, Some((2090, 2091)));
    let err = load(&expired, Validity::Enforce).expect_err("expired");
    assert_eq!(
        err.to_string(),
        "the certificate in <memory> expired at 2001-01-01T00:00:00Z"
    );
    assert!(matches!(
        load(&future, Validity::Enforce),
        Err(CertificateError::NotYetValid { .. })
    ));
    assert!(load(&expired, Validity::Warn).is_ok());
    assert!(load(&future, Validity::Warn).is_ok());
}

#[test]
fn load_names_the_missing_file() {
    let dir = std::env::temp_dir().join(format!("grace-tls-{}", std::process::id()));
    let err = Certificate::load(dir.join("c.pem"), dir.join("k.pem"), Validity::Enforce)
        .expect_err("missing");
    assert!(err.to_string().contains("c.pem"), "{err}");
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let cert = |name, serial| load(&make(name, serial, None), Validity::Enforce).expect("loads");
    let store = CertStore::new(cert("default.test", 1))
        .with_names(["API.test"], cert("api.test", 2))
        .with_names(["*.wild.test"], cert("wild", 3))
        .with_names(["exact.wild.test"], cert("exact", 4));
    let chosen = |name: Option<&str>| {
        let key = store.resolve(name);
        [1u8, 2, 3, 4]
            .into_iter()
            .find(|n| {
                std::iter::once(store.default_certificate())
                    .chain(store.named().map(|(_, c)| c))
                    .nth(usize::from(*n) - 1)
                    .is_some_and(|c| std::sync::Arc::ptr_eq(c.certified_key(), key))
            })
            .expect("one of them")
    };
    assert_eq!(chosen(None), 1);
    assert_eq!(chosen(Some("other.test")), 1);
    assert_eq!(chosen(Some("api.TEST")), 2);
    assert_eq!(chosen(Some("a.wild.test")), 3);
    assert_eq!(chosen(Some("exact.wild.test")), 4);
    assert_eq!(chosen(Some("wild.test")), 1, "a wildcard needs one label");
    assert_eq!(chosen(Some("a.b.wild.test")), 1, "and only one");
}
