"""The held-out ROC/DET curve a model version carries in its metrics (pipeline/train/job.py)."""

import numpy as np

from pipeline.data.orl import iter_orl
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import CURVE_KEY, item_samples, train_and_register
from pipeline.train.metrics import CURVE_POINTS, curve_points, eer, roc_points
from schemas.items import Modality
from tests.test_artifacts import ONE_STEP, PEOPLE, node


def test_a_thinned_curve_keeps_its_ends_and_its_eer_point_with_far_rising():
    rng = np.random.default_rng(0)
    distances = np.concatenate((rng.normal(0.4, 0.1, 3000), rng.normal(0.8, 0.1, 7000)))
    same = np.arange(10_000) < 3000
    far, frr = roc_points(distances, same)
    curve = curve_points(distances, same)
    kept = np.array(curve["far"]), np.array(curve["frr"])
    assert len(far) > 9000 and len(kept[0]) == len(kept[1]) <= CURVE_POINTS
    # FAR never falls and FRR never rises as the threshold loosens.
    assert (np.diff(kept[0]) >= 0).all() and (np.diff(kept[1]) <= 0).all()
    assert (kept[0][0], kept[1][0]) == (round(far[0], 6), round(frr[0], 6))
    assert (kept[0][-1], kept[1][-1]) == (1.0, 0.0)
    rate, _ = eer(distances, same)
    assert np.abs((kept[0] + kept[1]) / 2 - rate).min() < 1e-6
    assert np.abs(kept[0] - kept[1]).min() < 2e-3


def test_a_registered_version_carries_its_held_out_curve(tmp_path):
    settings = node(tmp_path, f"sqlite:///{tmp_path}/twinstream.db")
    faces = [face for face in iter_orl() if face.label in PEOPLE]
    store = MetadataStore.from_settings(settings)
    try:
        run = train_and_register(
            settings.model_copy(update={"train_overrides": ONE_STEP}),
            store,
            Modality.FACE,
            item_samples(Modality.FACE, faces),
            activate=True,
        )
        # As stored, read back: what GET /v1/models and the console's Models page show.
        metrics = store.get_model(run.record.version).metrics
    finally:
        store.close()
    far, frr = (np.array(metrics[CURVE_KEY][rate]) for rate in ("far", "frr"))
    assert 3 <= len(far) == len(frr) <= CURVE_POINTS
    assert (np.diff(far) >= 0).all() and far[-1] == 1.0 and frr[-1] == 0.0
    # The operating point the model was calibrated at is on the curve.
    assert np.abs((far + frr) / 2 - metrics["eer"]).min() < 1e-6
