//! The route table's names: [`Route`], one per path template (also the
//! metrics label and the OpenAPI path), and the `{version}` path parameter.

use super::error::ApiError;

/// The routes, each with a template label for metrics (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Predict,
    PredictVersion,
    Models,
    Model,
    Live,
    Ready,
    Metrics,
    Form,
    OipServer,
    OipModel,
    OipModelVersion,
    OipModelReady,
    OipModelVersionReady,
    OipInfer,
    OipInferVersion,
    OipRepositoryIndex,
    OipRepositoryLoad,
    OipRepositoryUnload,
    OpenApi,
    Unmatched,
}

impl Route {
    pub(super) const ALL: [Route; 20] = [
        Route::Predict,
        Route::PredictVersion,
        Route::Models,
        Route::Model,
        Route::Live,
        Route::Ready,
        Route::Metrics,
        Route::Form,
        Route::OipServer,
        Route::OipModel,
        Route::OipModelVersion,
        Route::OipModelReady,
        Route::OipModelVersionReady,
        Route::OipInfer,
        Route::OipInferVersion,
        Route::OipRepositoryIndex,
        Route::OipRepositoryLoad,
        Route::OipRepositoryUnload,
        Route::OpenApi,
        Route::Unmatched,
    ];

    /// The path template (OpenAPI syntax), also the metrics label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Route::Predict => "/v1/models/{name}/predict",
            Route::PredictVersion => "/v1/models/{name}/versions/{version}/predict",
            Route::Models => "/v1/models",
            Route::Model => "/v1/models/{name}",
            Route::Live => "/v2/health/live",
            Route::Ready => "/v2/health/ready",
            Route::Metrics => "/metrics",
            Route::Form => "/",
            Route::OipServer => "/v2",
            Route::OipModel => "/v2/models/{name}",
            Route::OipModelVersion => "/v2/models/{name}/versions/{version}",
            Route::OipModelReady => "/v2/models/{name}/ready",
            Route::OipModelVersionReady => "/v2/models/{name}/versions/{version}/ready",
            Route::OipInfer => "/v2/models/{name}/infer",
            Route::OipInferVersion => "/v2/models/{name}/versions/{version}/infer",
            Route::OipRepositoryIndex => "/v2/repository/index",
            Route::OipRepositoryLoad => "/v2/repository/models/{name}/load",
            Route::OipRepositoryUnload => "/v2/repository/models/{name}/unload",
            Route::OpenApi => "/openapi.json",
            Route::Unmatched => "unmatched",
        }
    }
}

/// A `{version}` path segment: a positive integer without leading zeros.
pub(crate) fn pinned_version(version: &str) -> Result<u64, ApiError> {
    crate::repository::layout::parse_version(version)
        .ok_or_else(|| ApiError::not_found(format!("version `{version}` is not a positive integer")))
}
