"""amnetvid-sk: video memorability prediction (AMNetVid) the scikit-learn way.

Names are imported lazily so that ``import amnetvid_sk`` and light commands
(``amnetvid sql``, ``amnetvid info``) do not pay for importing torch.
"""

from ._lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # errors
    "AmnetvidError": "errors",
    "VideoDecodeError": "errors",
    "WeightsError": "errors",
    "MissingDependencyError": "errors",
    "StoreError": "errors",
    "StoreFullError": "errors",
    "DiskFullError": "errors",
    "MissingVideosError": "errors",
    "ReadOnlyQueryError": "errors",
    "LabelFormatError": "errors",
    "FrameModelLookupError": "errors",
    "FrameModelRebuildError": "errors",
    "DeviceError": "errors",
    "ParameterError": "errors",
    "RecipeError": "errors",
    "RecipeNotFoundError": "errors",
    # frames
    "sample_frames": "video",
    "video_info": "video",
    "SampledFrames": "video",
    "VideoInfo": "video",
    "write_clip": "testing.clips",
    # frame models
    "FrameModel": "frame_models",
    "make_frame_model": "frame_models",
    "frame_model_names": "frame_models",
    "FrameModelSpec": "frame_models",
    "AMNet": "frame_models.amnet",
    "save_amnet_checkpoint": "frame_models.amnet",
    "ResMemGradCAM": "frame_models.resmem_gradcam",
    # rendering
    "render_jet": "render",
    "save_attention_figure": "render",
    "write_report": "report",
    # store and extraction
    "FeatureStore": "store",
    "extract": "extraction",
    "read_labels": "labels",
    "import_labels": "labels",
    # estimators
    "FrameScores": "transformers",
    "FrameEmbeddings": "transformers",
    "AttentionSequences": "transformers",
    "FrameMinMaxScaler": "transformers",
    "MeanScoreRegressor": "baseline",
    "ScoreLSTMRegressor": "estimators",
    "ConvLSTMRegressor": "estimators",
    "Conv3DRegressor": "conv3d",
    "Conv3DNet": "conv3d_network",
    "spearman_scorer": "metrics",
    "spearman": "metrics",
    # evaluation data and uncertainty
    "training_set": "training_data",
    "spearman_interval": "uncertainty",
    "paired_difference": "uncertainty",
    "OutOfFold": "uncertainty",
    # model files (data, no pickle)
    "save_model": "model_files",
    "load_model": "model_files",
    "ModelFileError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__():
    return __all__
