//! Binary discovery on this machine and the errors for missing majors, tools and mismatches.

use postgres::{BinarySearch, Error, Instance, PgMajor};

use crate::support::{Sandbox, binaries, per_major};

async fn binaries_match_their_major(major: PgMajor) {
    let found = binaries(major);
    let version = found.verify().await.unwrap();
    assert!(version.starts_with(&format!("{major}.")), "{version}");
    found.tool("initdb").unwrap();
    found.tool("pg_ctl").unwrap();
    if major.number() >= 14 {
        found.tool("psql").unwrap();
        found.tool("pg_controldata").unwrap();
    }
}
per_major!(binaries_match_their_major);

async fn data_dir_needs_its_own_major(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    assert_eq!(PgMajor::of_data_dir(&spec.data_dir).unwrap(), major);
    let other = PgMajor::all().find(|other| *other != major).unwrap();
    let error = Instance::start(&binaries(other), spec).await.unwrap_err();
    assert!(
        matches!(error, Error::WrongBinaries { data_major, binaries_major, .. } if data_major == major && binaries_major == other),
        "{error:?}"
    );
}
per_major!(data_dir_needs_its_own_major);

#[test]
fn npm_13_has_no_psql_and_says_where_it_looked() {
    let thirteen = binaries(PgMajor::new(13).unwrap());
    let error = thirteen.tool("psql").unwrap_err();
    assert!(matches!(&error, Error::ToolMissing { tool, .. } if tool == "psql"), "{error:?}");
    assert!(error.to_string().contains(&thirteen.bin_dir().display().to_string()), "{error}");
}

#[test]
fn every_supported_major_is_installed() {
    let installed: Vec<u8> =
        BinarySearch::default().installed().iter().map(|b| b.major().number()).collect();
    assert_eq!(installed, vec![13, 14, 15, 16, 17, 18]);
}

#[test]
fn not_a_data_dir() {
    let sandbox = Sandbox::new();
    assert!(matches!(PgMajor::of_data_dir(sandbox.path()), Err(Error::NotADataDir { .. })));
}
