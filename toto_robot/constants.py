"""Strings and ids that the whole project shares, spelled once.

Token ids. The low ids are reserved for the sequence markers of the Toto paper
(Sec. 3.4): video start = 1, end = 2, image start = 3, and 0 for padding. A
tokenizer's code ``c`` is stored and modelled as ``c + NUM_SPECIAL_TOKENS``,
so a model over a tokenizer with ``V`` codes has ``V + NUM_SPECIAL_TOKENS``
entries in its vocabulary.

Sequence layout: ``[start] + frame_0 tokens (raster) + ... + frame_{T-1} tokens + [end]``.
The 4096 visual tokens of a 16 x 16 x 16 clip are the context; the start and end
markers sit outside it, so a stored sequence is ``T*h*w + 2`` ids long and the
model reads ``T*h*w + 1`` positions (input ``seq[:-1]``, target ``seq[1:]``).
"""

PAD_TOKEN = 0
VIDEO_START_TOKEN = 1
END_TOKEN = 2
IMAGE_START_TOKEN = 3
NUM_SPECIAL_TOKENS = 4

# Observation / demonstration keys (sim envs, ROS recorder, behaviour cloning).
OBS_IMAGE = "image"  # uint8 [H, W, 3] (env) or [T, H, W, 3] (episode)
OBS_WRIST_IMAGE = "wrist_image"  # optional second camera, same layout
OBS_STATE = "state"  # float32 proprioception [S] / [T, S]
ACTION = "action"  # float32 [A] / [T, A], normalised to [-1, 1] in the sim suite
REWARD = "reward"
SUCCESS = "success"
LANGUAGE = "language"  # optional str []: the episode's instruction (LeRobot task, RLDS language_instruction)
SEED = "seed"  # optional int64 []: the env seed an episode was rolled out with (the collector resumes after it)

# Checkpoint file names: weights in safetensors, config beside them as JSON.
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
