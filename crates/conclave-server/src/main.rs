//! `conclave`: the one server binary (web app, signalling, API, media).
//!
//! This is the only crate that knows HTTP. It reads the configuration,
//! prepares the data directory, binds the sockets and hands the session
//! core to the media runtime.

mod accounts;
mod config;
mod meetings;
mod redact;
mod rtc;
mod setup;
mod twirp;
mod web;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use conclave_media::MediaConfig;
use conclave_runtime::{Engine, Engines};
use conclave_signal::{RoomSettings, Sfu, SfuConfig};
use conclave_token::{ApiKey, ApiSecret, Claims, Verifier, VideoGrant};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// jemalloc hands memory freed after a burst (a join storm) back to the
/// system within seconds; the system allocator keeps much of it resident.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "conclave", version, about = "Confidential video conferencing server")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// HTTP listen address (overrides http.listen).
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// UDP media port (overrides media.udp_port).
        #[arg(long)]
        udp_port: Option<u16>,
        /// Address announced to clients for media (repeatable; overrides media.announce).
        #[arg(long)]
        announce: Vec<std::net::IpAddr>,
    },
    /// Print an access token.
    Token {
        #[arg(long)]
        room: String,
        #[arg(long)]
        identity: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 6 * 3600)]
        ttl: u64,
        /// Forbid publishing.
        #[arg(long)]
        no_publish: bool,
        /// Forbid sending data.
        #[arg(long)]
        no_data: bool,
        /// Allow only these sources (camera, microphone, screen_share, screen_share_audio).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
        /// Also administer the room (RoomService calls for it).
        #[arg(long)]
        admin: bool,
        /// Allow creating, listing and deleting rooms through the RoomService.
        #[arg(long)]
        room_create: bool,
    },
    /// Invite someone to an account by e-mail and print the invitation link
    /// (the first administrator is made this way).
    Invite {
        #[arg(long)]
        email: String,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
    },
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub engines: Engines,
    pub verifier: Arc<Verifier>,
    pub api_key: ApiKey,
    pub api_secret: Arc<ApiSecret>,
    pub open_join: bool,
    pub room_defaults: RoomSettings,
    /// Meetings (with accounts); the door check of `/rtc` asks it.
    pub meetings: Option<Arc<conclave_meetings::Meetings>>,
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
    if let Some(d) = cli.data_dir {
        config.server.data_dir = d;
    }
    match cli.command {
        Command::Serve {
            http_listen,
            udp_port,
            announce,
        } => {
            if let Some(a) = http_listen {
                config.http.listen = a;
            }
            if let Some(p) = udp_port {
                config.media.udp_port = p;
            }
            if !announce.is_empty() {
                config.media.announce = announce;
            }
            init_logging(&config);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(serve(config))
        }
        Command::Token {
            room,
            identity,
            name,
            ttl,
            no_publish,
            no_data,
            sources,
            admin,
            room_create,
        } => {
            let (key, secret, _) = setup::api_credentials(&config).map_err(|e| e.to_string())?;
            let mut claims = Claims::for_join(&identity, &room, unix_now(), ttl);
            claims.name = name;
            let mut parsed = Vec::new();
            for s in &sources {
                let src = conclave_types::TrackSource::parse(s);
                if src == conclave_types::TrackSource::Unknown {
                    return Err(format!("unknown source {s:?}"));
                }
                parsed.push(src);
            }
            claims.video = VideoGrant {
                room_join: true,
                room,
                can_publish: Some(!no_publish),
                can_subscribe: Some(true),
                can_publish_data: Some(!no_data),
                can_publish_sources: parsed,
                room_admin: admin,
                room_create,
                room_list: room_create,
                ..VideoGrant::default()
            };
            let token = conclave_token::sign(&claims, &key, &secret).map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        Command::Invite { email, admin } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(async {
                let accounts = accounts::service(&config).await?;
                let role = if admin {
                    conclave_accounts::Role::Admin
                } else {
                    conclave_accounts::Role::User
                };
                let link = accounts
                    .create_invitation(&email, role, unix_now() as i64)
                    .await
                    .map_err(|e| e.client_message())?;
                println!("{link}");
                Ok(())
            })
        }
    }
}

fn init_logging(config: &Config) {
    // The WebRTC library logs addresses at debug level; keep it quiet unless asked.
    let level = if config.log.level.contains("str0m") {
        config.log.level.clone()
    } else {
        format!("{},str0m=warn", config.log.level)
    };
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = || redact::RedactingWriter::new(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Starts `media.workers` engines, engine `i` on `media.udp_port + i`
/// (or a free port), each announcing its own port.
async fn start_engines(config: &Config, room_defaults: &RoomSettings) -> Result<(Engines, Vec<u16>), String> {
    let node_id = format!("ND_{}", conclave_types::random_base62(12));
    let mut engines = Vec::new();
    let mut ports = Vec::new();
    for i in 0..config.media_workers() {
        let mut bind = config.media_bind();
        if bind.port() != 0 {
            // In range: the configuration was checked.
            bind.set_port(bind.port().saturating_add(i as u16));
        }
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("cannot bind the media port {bind}: {e}"))?;
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        ports.push(port);
        let mut announced = config.announced();
        for a in &mut announced {
            a.set_port(port);
        }
        let sfu = Sfu::new(
            SfuConfig {
                media: MediaConfig {
                    candidates: announced.clone(),
                },
                server_version: env!("CARGO_PKG_VERSION").to_owned(),
                node_id: node_id.clone(),
                default_room: room_defaults.clone(),
            },
            std::time::Instant::now(),
        );
        engines.push(Engine::start(sfu, socket, announced));
    }
    tracing::info!(engines = engines.len(), ports = ?ports, "media engines started");
    let mut engines = engines.into_iter();
    let first = engines.next().ok_or("no media engine")?;
    Ok((Engines::new(first, engines), ports))
}

async fn serve(config: Config) -> Result<(), String> {
    let (api_key, api_secret, generated) = setup::api_credentials(&config).map_err(|e| e.to_string())?;
    let mut verifier = Verifier::new();
    verifier
        .insert(api_key.clone(), api_secret.clone())
        .map_err(|e| e.to_string())?;
    let tls = setup::tls_files(&config).map_err(|e| e.to_string())?;

    let room_defaults = RoomSettings {
        empty_timeout: config.rooms.empty_timeout,
        departure_timeout: config.rooms.departure_timeout,
        max_participants: config.rooms.max_participants,
        metadata: String::new(),
    };
    let (engines, media_ports) = start_engines(&config, &room_defaults).await?;
    let mut state = AppState {
        engines: engines.clone(),
        verifier: Arc::new(verifier),
        api_key: api_key.clone(),
        api_secret: Arc::new(api_secret.clone()),
        open_join: config.open_join(),
        room_defaults,
        meetings: None,
    };
    let mut apis = Vec::new();
    if config.accounts.enabled {
        let a = accounts::service(&config).await?;
        accounts::spawn_housekeeping(a.clone());
        let m = conclave_meetings::Meetings::new(
            a.store().clone(),
            conclave_meetings::Settings {
                allow_guests: config.meetings.allow_guests,
                max_file_bytes: usize::try_from(config.meetings.max_file_bytes).unwrap_or(usize::MAX),
                public_url: config.public_url().trim_end_matches('/').to_owned(),
            },
            api_key,
            api_secret,
        )
        .map_err(|e| e.to_string())?;
        meetings::spawn_housekeeping(m.clone());
        state.meetings = Some(m.clone());
        apis.push((
            "/api/account",
            accounts::router(a.clone(), config.accounts.trusted_proxies.clone()),
        ));
        apis.push((
            "/api/meetings",
            meetings::router(m, a, engines, config.accounts.trusted_proxies.clone()),
        ));
    }
    let app = router(state, tls.is_some(), apis);

    let listener = std::net::TcpListener::bind(config.http.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.http.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shown_host = if local.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        local.ip().to_string()
    };
    println!("Conclave {} is running.", env!("CARGO_PKG_VERSION"));
    println!("  Open {scheme}://{shown_host}:{}/ in a browser.", local.port());
    let shown_ports: Vec<String> = media_ports.iter().map(u16::to_string).collect();
    println!(
        "  Media: UDP port{} {} ({} engine{}).",
        if media_ports.len() == 1 { "" } else { "s" },
        shown_ports.join(", "),
        media_ports.len(),
        if media_ports.len() == 1 { "" } else { "s" }
    );
    if generated {
        println!(
            "  New API credentials were stored in {}/keys.toml.",
            config.server.data_dir.display()
        );
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "conclave".into());
    println!(
        "  Invitation tokens: {exe} token --data-dir {} --room ROOM --identity NAME",
        config.server.data_dir.display()
    );
    tracing::info!(
        port = local.port(),
        tls = tls.is_some(),
        open_join = config.open_join(),
        "listening"
    );

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    match tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls_config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| format!("cannot load the TLS certificate {}: {e}", cert.display()))?;
            axum_server::from_tcp_rustls(listener, tls_config)
                .map_err(|e| e.to_string())?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .map_err(|e| e.to_string())
        }
        None => axum_server::from_tcp(listener)
            .map_err(|e| e.to_string())?
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .map_err(|e| e.to_string()),
    }
}

fn router(state: AppState, tls: bool, apis: Vec<(&'static str, Router)>) -> Router {
    let security_headers = move |mut resp: axum::response::Response| async move {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(web::CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            "permissions-policy",
            HeaderValue::from_static(
                "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
            ),
        );
        h.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
        if tls {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        resp
    };
    let mut app = Router::new();
    for (path, api) in apis {
        app = app.nest_service(path, api);
    }
    app.route("/rtc", get(rtc::connect))
        .route("/rtc/validate", get(rtc::validate))
        .route("/rtc/v1", get(rtc::v1_not_supported))
        .route("/rtc/v1/validate", get(rtc::v1_not_supported))
        .route("/twirp/livekit.RoomService/{method}", post(twirp::room_service))
        .route("/api/join", post(web::join))
        .route("/healthz", get(web::healthz))
        .route("/readyz", get(web::readyz))
        .route("/metrics", get(web::metrics))
        .fallback(get(web::static_file))
        .layer(DefaultBodyLimit::max(twirp::MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}
