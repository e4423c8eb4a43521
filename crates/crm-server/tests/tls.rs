//! TLS to PostgreSQL: a throwaway CA made with the `openssl` command, a PostgreSQL server
//! that serves a certificate it signed (and takes TCP connections only over TLS), and the
//! real binary connecting with `sslmode=verify-full&sslrootcert=<the CA's file>`. The same
//! server is refused, with a message that says why and no password, when the CA file is
//! another CA's, when no CA file is given, and when the certificate names another host.

mod server_process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crm_testkit::PgCluster;
use serde_json::{Value, json};
use server_process::{PATIENCE, ServerProcess, binary};
use tempfile::TempDir;

/// A certificate authority made for one test, in `dir`.
struct Ca {
    key: PathBuf,
    cert: PathBuf,
}

/// Runs `openssl` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (install Debian's `openssl` package)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new CA, `<name>.key` and `<name>.pem`: a self-signed P-256 certificate for signing
/// certificates.
fn make_ca(dir: &Path, name: &str) -> Ca {
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN=crm test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    Ca {
        key: dir.join(key),
        cert: dir.join(cert),
    }
}

/// A server certificate `<name>.crt` and key `<name>.key`, signed by `ca`, for the names in
/// `subject_alt_names` (e.g. `IP:127.0.0.1,DNS:localhost`).
fn make_server_cert(
    dir: &Path,
    ca: &Ca,
    name: &str,
    subject_alt_names: &str,
) -> (PathBuf, PathBuf) {
    let (key, csr, cert, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={subject_alt_names}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let serial = format!("0x{}", uuid::Uuid::new_v4().simple());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca.cert.to_str().unwrap(),
            "-CAkey",
            ca.key.to_str().unwrap(),
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// `url` (a database's `postgres://` URL) with TLS query parameters.
fn with_tls(url: &str, sslmode: &str, root_cert: Option<&Path>) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.query_pairs_mut().append_pair("sslmode", sslmode);
    if let Some(path) = root_cert {
        url.query_pairs_mut()
            .append_pair("sslrootcert", path.to_str().unwrap());
    }
    url.into()
}

/// `crm-server --database <database> serve` is expected to fail at start: its standard error.
fn refused_at_start(database: &str) -> String {
    let out: Output = Command::new(binary())
        .arg("--database")
        .arg(database)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "the server started on {database}: {stderr}"
    );
    stderr
}

/// Whether the connection `Database::connect` opens for `url` runs over TLS, read from
/// PostgreSQL's own view of it.
async fn session_uses_tls(url: &str) -> bool {
    let db = crm_server::Database::connect(&url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let ssl: String =
        sqlx::query_scalar("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(db.pool())
            .await
            .unwrap();
    db.close().await;
    ssl == "true"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_ca_file_serves_and_another_ca_is_refused() {
    let pki = TempDir::with_prefix("crm-tls-").unwrap();
    let ca = make_ca(pki.path(), "ca");
    let other_ca = make_ca(pki.path(), "other-ca");
    let (cert, key) = make_server_cert(pki.path(), &ca, "server", "IP:127.0.0.1,DNS:localhost");
    let cluster = PgCluster::start_with_tls(&cert, &key);
    let database = cluster.create_database().await;

    // (a) The CA's file: the real server opens the store, runs its migrations and serves.
    let verified = with_tls(&database, "verify-full", Some(&ca.cert));
    let server = ServerProcess::start(&verified, true, "warn,crm_server=info", &[]);
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    server.ready(&http).await;
    let (key, account) = server.bootstrap.clone().unwrap();
    let created: Value = http
        .post(format!("{}/unified/crm/contacts", server.base_url))
        .basic_auth(&key, Some(""))
        .header("x-account-id", &account)
        .json(&json!({"first_name": "Tls", "last_name": "Verified"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["id"].as_str().expect("created").to_owned();
    let read = http
        .get(format!("{}/unified/crm/contacts/{id}", server.base_url))
        .basic_auth(&key, Some(""))
        .header("x-account-id", &account)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    drop(server);
    // The cluster takes TCP connections only over TLS; and the server's own connection
    // reports it.
    assert!(session_uses_tls(&verified).await);

    // (b) Another CA's file: refused at start, saying it is certificate verification.
    let stderr = refused_at_start(&with_tls(&database, "verify-full", Some(&other_ca.cert)));
    assert!(
        stderr.contains("TLS to the database failed: certificate verification refused")
            && stderr.contains("no trusted CA signed")
            && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert!(!stderr.contains(cluster.password()), "{stderr}");
    assert!(stderr.contains("crm:********@"), "{stderr}");
    // `serve --check-config` says the same, in its one line.
    let checked = Command::new(binary())
        .arg("--database")
        .arg(with_tls(&database, "verify-full", Some(&other_ca.cert)))
        .args(["serve", "--check-config"])
        .output()
        .expect("run the check");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success());
    assert!(said.contains("no trusted CA signed"), "{said}");
    assert!(!said.contains(cluster.password()), "{said}");

    // No CA file: the public roots alone do not vouch for a private CA.
    let stderr = refused_at_start(&with_tls(&database, "verify-full", None));
    assert!(stderr.contains("no trusted CA signed"), "{stderr}");
    assert!(!stderr.contains(cluster.password()), "{stderr}");

    // A CA file that is not there is named as such, before any connection.
    let missing = pki.path().join("missing.pem");
    let stderr = refused_at_start(&with_tls(&database, "verify-full", Some(&missing)));
    assert!(
        stderr.contains("TLS to the database failed") && stderr.contains("cannot read the CA file"),
        "{stderr}"
    );
    assert!(!stderr.contains(cluster.password()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused_by_verify_full() {
    let pki = TempDir::with_prefix("crm-tls-").unwrap();
    let ca = make_ca(pki.path(), "ca");
    // Signed by the trusted CA, but for a name that is not the host the URL connects to.
    let (cert, key) = make_server_cert(pki.path(), &ca, "elsewhere", "DNS:db.example.internal");
    let cluster = PgCluster::start_with_tls(&cert, &key);
    let database = cluster.create_database().await;

    let stderr = refused_at_start(&with_tls(&database, "verify-full", Some(&ca.cert)));
    assert!(
        stderr.contains("TLS to the database failed: certificate verification refused")
            && stderr.contains("does not name the host"),
        "{stderr}"
    );
    assert!(!stderr.contains(cluster.password()), "{stderr}");

    // The certificate is otherwise good: verify-ca, which skips the name, connects.
    assert!(session_uses_tls(&with_tls(&database, "verify-ca", Some(&ca.cert))).await);
}
