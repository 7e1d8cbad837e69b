//! `router` command: `serve` (default), `compose`.

use std::path::PathBuf;

use router::Config;

/// mimalloc: the executor allocates many short-lived JSON nodes per request; glibc
/// malloc showed up as a quarter of the router's CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ! {
    eprintln!(
        "usage:\n  router [serve] [--config FILE] [--supergraph PATH] [--listen ADDR]\n  router compose [--schema-dir DIR] [--out PATH] [--check] [--live NAME=URL ...]\n  router plan --supergraph PATH QUERY"
    );
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    // Transparent huge pages off for the process, before any thread starts: mimalloc
    // asks for them on its arenas, so each arena it touches commits 2 MiB at a time
    // (resident memory at start 35 MB with them, 20 MB without, on the benchmark's
    // supergraph). Where the kernel refuses, the router runs as before.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.first().map(String::as_str) {
        Some("serve") | Some("compose") | Some("plan") => args.remove(0),
        Some("-h") | Some("--help") => usage(),
        _ => "serve".to_owned(),
    };
    if command != "serve" {
        init_tracing(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command.as_str() {
        "serve" => runtime.block_on(serve(args)),
        "compose" => runtime.block_on(compose(args)),
        "plan" => runtime.block_on(plan(args)),
        _ => usage(),
    }
}

/// Logging, and trace export to `otlp_endpoint` when one is set.
fn init_tracing(otlp_endpoint: Option<&str>) {
    let format = std::env::var("LOG_FORMAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
    contract::telemetry::init("router", &level, format, otlp_endpoint);
}

async fn serve(args: Vec<String>) -> anyhow::Result<()> {
    let mut config_path: Option<PathBuf> = None;
    let mut supergraph = None;
    let mut listen = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--config" => config_path = Some(PathBuf::from(value())),
            "--supergraph" => supergraph = Some(PathBuf::from(value())),
            "--listen" => listen = Some(value()),
            _ => usage(),
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let mut config = match config_path {
        // `--config` takes the place of ROUTER_CONFIG.
        Some(p) => {
            let mut config = Config::from_file(&p)?;
            config.apply_env(env)?;
            config
        }
        None => Config::from_env(env)?,
    };
    if let Some(s) = supergraph {
        config.supergraph = s;
    }
    if let Some(l) = listen {
        config.listen = l.parse()?;
    }
    init_tracing(config.otlp_endpoint.as_deref());
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let served = router::run(config, listener, contract::shutdown::signal()).await;
    contract::telemetry::flush();
    served
}

async fn compose(args: Vec<String>) -> anyhow::Result<()> {
    use router::compose::{compose_supergraph, fetch_live_sdl, read_schema_dir};
    let mut dir = PathBuf::from("schema");
    let mut out = None;
    let mut check = false;
    let mut live: Vec<(String, String)> = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--schema-dir" => dir = PathBuf::from(value()),
            "--out" => out = Some(PathBuf::from(value())),
            "--check" => check = true,
            "--live" => {
                let v = value();
                let (name, url) = v.split_once('=').unwrap_or_else(|| usage());
                live.push((name.to_owned(), url.to_owned()));
            }
            _ => usage(),
        }
    }
    let out = out.unwrap_or_else(|| dir.join("supergraph.graphql"));
    let subgraphs = if live.is_empty() {
        read_schema_dir(&dir)?
    } else {
        let mut subgraphs = Vec::new();
        for (name, url) in &live {
            let sdl = fetch_live_sdl(name, url).await?;
            // Keep the fetched SDLs next to the supergraph, as committed artifacts.
            std::fs::write(dir.join(format!("{name}.graphql")), &sdl.sdl)?;
            subgraphs.push(sdl);
        }
        subgraphs
    };
    let sdl = compose_supergraph(&subgraphs)?;
    if check {
        let current = std::fs::read_to_string(&out).unwrap_or_default();
        if current != sdl {
            anyhow::bail!("{} is out of date: run `router compose`", out.display());
        }
        println!("{} is up to date", out.display());
    } else {
        std::fs::write(&out, &sdl)?;
        println!("wrote {} ({} subgraphs)", out.display(), subgraphs.len());
    }
    Ok(())
}

/// Prints the query plan of an operation.
async fn plan(args: Vec<String>) -> anyhow::Result<()> {
    let mut config = Config::default();
    let mut query = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--supergraph" => {
                config.supergraph = PathBuf::from(it.next().unwrap_or_else(|| usage()))
            }
            _ => query = Some(arg),
        }
    }
    let query = query.unwrap_or_else(|| usage());
    let state = router::build_state(config).await?;
    match state.pipeline.prepare(&query, None) {
        Ok(prepared) => match &prepared.plan {
            Some(plan) => println!("{plan}"),
            None => println!("<no subgraph fetch needed>"),
        },
        Err(e) => println!("{}", serde_json::to_string_pretty(&e.errors)?),
    }
    Ok(())
}
