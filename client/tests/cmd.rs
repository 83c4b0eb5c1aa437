//! Golden tests of what a person sees: `--help` and the main errors.
//! Regenerate after a deliberate change with `TRYCMD=overwrite cargo test -p enlace-client --test cmd`.

#[test]
fn cli_golden() {
    trycmd::TestCases::new()
        .env("NO_COLOR", "1")
        .case("tests/cmd/*.toml")
        .case("tests/cmd/*.md");
}
