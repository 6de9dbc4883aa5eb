//! `weft login HOST --token T`: saves a token for one host, so that later
//! commands against that host send it (see [`credentials`](crate::credentials)).

use std::io::Write as _;

use clap::Args;
use hyper::Method;
use weft::Address;

use crate::manage::{HostApi, Target};
use crate::{Failure, Result, credentials};

/// Options of `weft login`.
#[derive(Debug, Args)]
pub(crate) struct LoginCmd {
    /// The host the token is for, as other commands' --host name it.
    #[arg(value_name = "HOST")]
    host: String,
    /// The token, as `weft token create` printed it.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: String,
    /// Save the token without checking it with the host first.
    #[arg(long)]
    no_verify: bool,
}

pub(crate) async fn login(cmd: LoginCmd) -> Result<()> {
    let address: Address = cmd
        .host
        .parse()
        .map_err(|e: weft::Error| Failure(format!("HOST: {}", e.message())))?;
    let token = cmd.token.trim().to_owned();
    if !token.starts_with("weft_") {
        return Err(Failure(
            "that is not a weft token (they start with `weft_`); `weft token create` makes one"
                .into(),
        ));
    }
    if !cmd.no_verify {
        let api = HostApi::new(&Target {
            host: cmd.host.clone(),
            token: Some(token.clone()),
            data_dir: None,
        })?;
        api.send_json(Method::GET, "/api/v1/services", None).await?;
    }
    let path = credentials::save(&address, token)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "saved the token for {address} in {}", path.display())?;
    Ok(())
}
