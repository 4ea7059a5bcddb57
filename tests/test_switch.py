"""A model switch keeps the store and the holder agreeing on the active version, also when the
holder refuses (real store, real holder over FAISS)."""

import pytest

import tests.test_holder as holder_case
from pipeline.index.holder import IndexHolder
from pipeline.retrain.rebuild import switch_active
from schemas.items import Modality
from tests.test_holder import DIM

settings, store = holder_case.settings, holder_case.store


def test_a_refused_switch_leaves_the_store_on_the_version_the_holder_serves(settings, store):
    holder = IndexHolder(settings, Modality.FACE)
    # face-v2 was never built in this holder, so its switch fails after the store's.
    with pytest.raises(LookupError):
        switch_active(store, Modality.FACE, "face-v2", holder.activate)
    assert holder.active_version() == "face-v1"
    assert store.active_model(Modality.FACE).version == "face-v1"


def test_a_switch_moves_the_store_and_the_holder_together(settings, store):
    holder = IndexHolder(settings, Modality.FACE)
    holder.begin_build("face-v2", DIM)
    assert switch_active(store, Modality.FACE, "face-v2", holder.activate) == "face-v1"
    assert holder.active_version() == "face-v2"
    assert store.active_model(Modality.FACE).version == "face-v2"
