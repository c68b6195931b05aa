"""AMNetVid at the working note's settings (4 model frames, the 3 attention maps rendered JET
on black at 70x70 plus the frame scores, the 230,937-parameter ConvLSTM, MSE, Adam 1e-3, batch
32, up to 20 epochs), fed from all 28 stored frames: each epoch trains on a new random 4-frame
subset of each video (in time order), and a prediction is the mean over 5 evenly spread 4-frame
subsets. The note's outlook asks for this ("longer input sequences, multiple sequences per
video", "data augmentation during training"); with train_subsets=None and the reader's n_frames
at 4 it is the plain `amnetvid` recipe. Memory: 28 JET frames are 1.2 MB per video (uint8), about
10 GB for the 8,000 MediaEval dev videos; maps="raw" with amnetvid_raw's module settings needs 66 KB."""

from sklearn.pipeline import Pipeline

from amnetvid_sk import AttentionSequences, ConvLSTMRegressor

#: frames the reader hands over per video: all the note stored (28 from a 7 s clip at --fps 4);
#: a store holding fewer per video needs the reader's n_frames lowered to what it holds
STORED_FRAMES = 28


def pipeline(store="store"):
    return Pipeline([
        ("sequences", AttentionSequences(store, n_frames=STORED_FRAMES, maps="jet", size=70)),
        ("net", ConvLSTMRegressor(module__n_frames=4, module__map_channels=9, module__map_size=70,
                                  train_subsets="random", test_subsets=5, random_state=0)),
    ])


param_grid = {
    "net__train_subsets": ["random", "uniform"],  # "uniform": the plain 4-frame pick, for comparison
    "net__test_subsets": [1, 5],
    "net__lr": [1e-3, 3e-4],
}
