//! The subgraph bootstrap, written once: a service says what it is ([`Subgraph`]) and
//! assembles its app on an [`App`] builder; the kit reads the configuration, connects
//! to MongoDB, serves, stops on Ctrl-C / SIGTERM, exports the SDL, and gives binaries
//! exit codes that say what went wrong.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::process::ExitCode;

use axum::Router;
use mongodb::Database;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{ConfigError, Env, ServiceConfig, Vars};
use crate::events::{Consumer, DispatchSettings, Dispatcher, EventHandler};
use crate::server::{Background, Shutdown};
use crate::users::UsersSettings;

/// What a subgraph service tells the kit about itself.
pub trait Subgraph: Sized + Send + Sync + 'static {
    /// The service name: log field, default database, consumer name.
    const NAME: &'static str;
    /// The port it listens on unless `PORT` says otherwise.
    const DEFAULT_PORT: u16;
    /// The service's own settings, beside the common ones of [`Settings`].
    type Own: OwnSettings;

    /// The federation SDL of the service's schema, as committed under `schema/`
    /// (`db` is never touched).
    fn sdl(settings: &Settings<Self::Own>, db: &Database) -> String;

    /// Creates indexes and assembles the app (its GraphQL schema, event consumer,
    /// dispatchers, extra routes and background jobs) on `app`.
    fn start(
        settings: &Settings<Self::Own>,
        db: Database,
        app: &mut App,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;
}

/// A service's own settings, read after the common ones.
pub trait OwnSettings: Sized + Send + Sync {
    /// Where the service's events go unless `EVENT_CONSUMERS` says otherwise
    /// (`budgets=http://127.0.0.1:3003,...`; empty: it produces none).
    const DEFAULT_CONSUMERS: &'static str = "";

    /// Reads the service's own variables; may adjust the common `service` part (a
    /// default of its own).
    fn from_vars(vars: &dyn Vars, service: &mut ServiceConfig) -> Result<Self, ConfigError>;
}

/// A service without settings of its own.
impl OwnSettings for () {
    fn from_vars(_: &dyn Vars, _: &mut ServiceConfig) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Everything a service is configured with: the common part, where the users
/// subgraph is, where its events go and how they are delivered, the clock, and the
/// service's own settings (`own`, also reached through `Deref`).
#[derive(Debug, Clone)]
pub struct Settings<X> {
    pub service: ServiceConfig,
    pub users: UsersSettings,
    pub consumers: Vec<Consumer>,
    pub dispatch: DispatchSettings,
    pub clock: Clock,
    pub own: X,
}

impl<X: OwnSettings> Settings<X> {
    pub fn from_vars(
        vars: &(impl Vars + ?Sized),
        service: ServiceConfig,
    ) -> Result<Settings<X>, ConfigError> {
        let vars: &dyn Vars = &Dyn(vars);
        let mut service = service;
        let own = X::from_vars(vars, &mut service)?;
        Ok(Settings {
            service,
            users: UsersSettings::from_vars(vars)?,
            consumers: crate::events::consumers_from_vars(vars, X::DEFAULT_CONSUMERS)?,
            dispatch: DispatchSettings::from_vars(vars)?,
            clock: Clock::system(),
            own,
        })
    }
}

impl<X> Settings<X> {
    /// A client of the users subgraph (profiles: currency, timezone; households).
    pub fn user_directory(&self) -> crate::users::UserDirectory {
        crate::users::UserDirectory::new(self.users.clone())
            .with_service_token(self.service.service_token.clone())
    }
}

/// Any `Vars`, sized or not, as a `dyn Vars`.
struct Dyn<'a, V: Vars + ?Sized>(&'a V);

impl<V: Vars + ?Sized> Vars for Dyn<'_, V> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name)
    }
}

impl<X> Deref for Settings<X> {
    type Target = X;

    fn deref(&self) -> &X {
        &self.own
    }
}

impl<X> DerefMut for Settings<X> {
    fn deref_mut(&mut self) -> &mut X {
        &mut self.own
    }
}

/// A started service: its HTTP app, its background tasks (aborted when dropped) and
/// its parts (`Deref` to them).
pub struct Running<S> {
    pub router: Router,
    pub background: Background,
    pub inner: S,
}

impl<S> Deref for Running<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.inner
    }
}

/// The builder a service assembles its app on.
pub struct App {
    name: &'static str,
    config: ServiceConfig,
    db: Database,
    router: Router,
    background: Background,
}

impl App {
    fn new(name: &'static str, config: &ServiceConfig, db: &Database) -> App {
        App {
            name,
            config: config.clone(),
            db: db.clone(),
            router: Router::new(),
            background: Background::default(),
        }
    }

    /// Serves `schema` on the standard routes (`/graphql`, websockets, `/health`, `/ready`).
    pub fn graphql<E: async_graphql::Executor>(&mut self, schema: E) -> &mut Self {
        let routes = crate::server::service_router(schema, self.db.clone(), &self.config);
        self.routes(routes)
    }

    /// Consumes events on `POST /internal/events` with the kit's one poison-event policy
    /// (dead letters, `/metrics`, re-drive).
    pub async fn consumer<H: EventHandler>(
        &mut self,
        handler: H,
    ) -> Result<&mut Self, crate::AppError> {
        let routes = crate::events::consumer_app(
            self.name,
            handler,
            &self.db,
            self.config.service_token.clone(),
        )
        .await?;
        Ok(self.routes(routes))
    }

    /// A dispatcher of the outboxes in `collections` to the configured consumers,
    /// running in the background from now on.
    pub async fn dispatcher<X>(
        &mut self,
        collections: &[&str],
        settings: &Settings<X>,
    ) -> Result<Dispatcher, crate::AppError> {
        let dispatcher = Dispatcher::new(
            self.db.clone(),
            collections,
            settings.consumers.clone(),
            self.config.service_token.clone(),
            settings.dispatch.clone(),
        )
        .for_instance(&settings.service.instance);
        dispatcher.ensure_indexes().await?;
        self.background.push(dispatcher.spawn());
        Ok(dispatcher)
    }

    /// More routes beside the standard ones.
    pub fn routes(&mut self, routes: Router) -> &mut Self {
        let router = std::mem::take(&mut self.router);
        self.router = router.merge(routes);
        self
    }

    /// The background tasks, to add a job.
    pub fn background(&mut self) -> &mut Background {
        &mut self.background
    }
}

/// Creates indexes and starts the service over a connected database.
pub async fn start<S: Subgraph>(
    settings: &Settings<S::Own>,
    db: Database,
) -> anyhow::Result<Running<S>> {
    let mut app = App::new(S::NAME, &settings.service, &db);
    let inner = S::start(settings, db, &mut app).await?;
    Ok(Running {
        router: app.router,
        background: app.background,
        inner,
    })
}

/// Connects to MongoDB and serves until `shutdown` completes.
pub async fn run<S: Subgraph>(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = Settings::<S::Own>::from_vars(&Env, config)?;
    let service = &settings.service;
    let db = crate::db::connect(&service.mongodb_uri, &service.database).await?;
    let running = start::<S>(&settings, db).await?;
    crate::server::serve(listener, running.router, shutdown).await?;
    drop(running.background);
    Ok(())
}

/// The federation SDL, as committed in `schema/<name>.graphql`.
pub fn sdl<S: Subgraph>() -> anyhow::Result<String> {
    let secret = "x".repeat(crate::config::MIN_SECRET_LEN);
    let vars: [(&str, &str); 2] = [("JWT_SECRET", &secret), ("PORT", "0")];
    let service = ServiceConfig::from_vars(&vars, S::NAME, 0)?;
    let settings = Settings::<S::Own>::from_vars(&vars, service)?;
    Ok(S::sdl(&settings, &crate::db::unconnected("sdl")))
}

/// Runs a service binary: reads the configuration from the environment, binds
/// `HOST:PORT`, and serves until Ctrl-C / SIGTERM.
/// Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error.
pub async fn main<S: Subgraph>() -> ExitCode {
    let service = S::NAME;
    let config = match ServiceConfig::from_env(service, S::DEFAULT_PORT) {
        Ok(c) => c,
        Err(e) => return config_failure(service, &e),
    };
    crate::telemetry::init(
        service,
        &config.log_level,
        config.log_format,
        config.otlp_endpoint.as_deref(),
    );
    let addr = format!("{}:{}", config.host, config.port);
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{service}: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(service, %addr, "listening");
    let served = run::<S>(config, listener, Box::pin(crate::server::shutdown_signal())).await;
    crate::telemetry::flush();
    match served {
        Ok(()) => {
            tracing::info!(service, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(service: &str, e: &ConfigError) -> ExitCode {
    eprintln!("{service}: {e}");
    ExitCode::from(2)
}
