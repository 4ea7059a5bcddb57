"""The 16 kHz speaker front end and the GE2E LSTM on real prompts (Asterisk, KDE, Fish Fillets)."""

import importlib.util
import io

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.data import ASTERISK_ROOT
from pipeline.decode import DecodeError
from pipeline.decode.audio import _resample
from pipeline.decode.speech import (
    HOP,
    MARGIN_MS,
    MAX_VOICED_SECONDS,
    N_PARTIALS,
    PARTIAL_FRAMES,
    SAMPLE_RATE,
    SPEECH_SHAPE,
    TARGET_DBFS,
    decode_speech,
    mel_filterbank,
    mel_power,
    normalise_volume,
    partial_starts,
    speech_features,
    trim_silence,
)

CARLO = ASTERISK_ROOT / "it_IT_m_Carlo"
ALLISON = ASTERISK_ROOT / "en_US_f_Allison"


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def read(path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(str(path), dtype="float32")
    return samples, rate


def at_16k(path) -> np.ndarray:
    samples, rate = read(path)
    return _resample(samples, rate, SAMPLE_RATE)


@pytest.fixture(scope="module")
def model():
    from pipeline.embed.speaker_lstm import pretrained_speaker_lstm

    try:
        return pretrained_speaker_lstm()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def embed(model, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(features)[None])[0].numpy()


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_any_rate_and_length_gives_the_fixed_shape(rate):
    samples, source_rate = read(CARLO / "vm-goodbye.wav")  # 0.71 s
    for seconds in (0.3, 0.71, 7.0):
        clip = np.resize(samples, int(seconds * source_rate))
        features = decode_speech(wav_bytes(_resample(clip, source_rate, rate), rate))
        assert features.shape == SPEECH_SHAPE == (N_PARTIALS, 40, PARTIAL_FRAMES)
        assert features.dtype == np.float32 and np.isfinite(features).all()


def test_stereo_is_mixed_to_mono():
    samples, rate = read(ALLISON / "vm-goodbye.wav")
    mono = decode_speech(wav_bytes(samples, rate))
    stereo = decode_speech(wav_bytes(np.stack([samples, samples], axis=1), rate))
    np.testing.assert_allclose(stereo, mono, rtol=1e-4, atol=1e-6)


def test_mel_filterbank_is_librosas_slaney_default():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    np.testing.assert_allclose(mel_filterbank(), expected, atol=1e-5, rtol=0)


def test_mel_power_is_librosas_melspectrogram():
    librosa = pytest.importorskip("librosa")
    signal = at_16k(ALLISON / "vm-goodbye.wav")
    expected = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=400, hop_length=160, n_mels=40
    )
    ours = mel_power(signal)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5 * expected.max()


def test_trimming_removes_added_silence_but_keeps_the_prompt():
    prompt = at_16k(CARLO / "vm-goodbye.wav")
    room_tone = at_16k(CARLO / "silence" / "1.wav")  # a real recording of the line's silence
    padded = np.concatenate([room_tone, prompt, room_tone[: SAMPLE_RATE // 2]])
    kept_prompt, kept_padded = len(trim_silence(prompt)), len(trim_silence(padded))
    # Carlo's prompts are cut tight: the rule keeps all but the last few ms of the prompt...
    assert kept_prompt >= 0.98 * len(prompt)
    # ...and of the 1.5 s of room tone around it only the margin on either side survives.
    added = len(padded) - len(prompt)
    assert added == int(1.5 * SAMPLE_RATE)
    assert kept_padded - kept_prompt <= 2 * MARGIN_MS * SAMPLE_RATE // 1000 + 160


def test_trimming_keeps_pauses_inside_a_clip():
    prompt = at_16k(CARLO / "vm-goodbye.wav")
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    twice = np.concatenate([pause, prompt, pause, prompt, pause])
    kept = trim_silence(twice)
    inner = 2 * len(prompt) + len(pause)
    assert inner - 0.02 * len(prompt) <= len(kept) <= inner + 2 * MARGIN_MS * SAMPLE_RATE // 1000


@pytest.mark.parametrize("name", ["1.wav", "5.wav"])
def test_room_tone_alone_is_no_speech(name):
    samples, rate = read(CARLO / "silence" / name)
    with pytest.raises(DecodeError, match="no speech found"):
        decode_speech(wav_bytes(samples, rate))


def test_digital_silence_is_no_speech():
    with pytest.raises(DecodeError, match="no speech found"):
        decode_speech(wav_bytes(np.zeros(16000, dtype=np.float32), 16000))


def test_gain_does_not_change_the_features():
    samples, rate = read(ALLISON / "vm-goodbye.wav")
    loud = speech_features(samples, rate)
    quiet = speech_features(samples * 0.05, rate)
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3 * float(loud.max()))
    level = np.sqrt(np.mean(normalise_volume(samples) ** 2))
    assert level == pytest.approx(10 ** (TARGET_DBFS / 20))


def carlo_prompts(count: int) -> np.ndarray:
    return np.concatenate([at_16k(path) for path in sorted(CARLO.glob("vm-*.wav"))[:count]])


def test_windows_cover_a_long_clip_from_start_to_end():
    joined = carlo_prompts(14)
    # Longer than N_PARTIALS windows end to end, shorter than the voice considered.
    assert N_PARTIALS * PARTIAL_FRAMES * HOP < len(joined) < MAX_VOICED_SECONDS * SAMPLE_RATE
    features = speech_features(joined, SAMPLE_RATE)
    mel = mel_power(normalise_volume(trim_silence(joined)))
    starts = partial_starts(mel.shape[1])
    assert starts[0] == 0 and starts[-1] + PARTIAL_FRAMES == mel.shape[1]
    assert np.all(np.diff(starts) > PARTIAL_FRAMES)  # spread out, no overlap on a long clip
    np.testing.assert_allclose(features[0], mel[:, :PARTIAL_FRAMES], rtol=1e-6)
    np.testing.assert_allclose(features[-1], mel[:, -PARTIAL_FRAMES:], rtol=1e-6)


def test_only_the_first_seconds_of_voice_are_considered():
    joined = carlo_prompts(30)
    assert len(joined) > 1.5 * MAX_VOICED_SECONDS * SAMPLE_RATE
    assert len(trim_silence(joined)) == MAX_VOICED_SECONDS * SAMPLE_RATE
    head = joined[: int(MAX_VOICED_SECONDS * SAMPLE_RATE)]
    np.testing.assert_allclose(
        speech_features(joined, SAMPLE_RATE), speech_features(head, SAMPLE_RATE), rtol=1e-4
    )


def test_a_short_clip_is_repeated_to_fill_every_window():
    prompt = at_16k(CARLO / "vm-goodbye.wav")  # 0.71 s: 72 frames
    features = speech_features(prompt, SAMPLE_RATE)
    frames = mel_power(normalise_volume(trim_silence(prompt))).shape[1]
    assert frames < PARTIAL_FRAMES
    assert all(np.array_equal(window, features[0]) for window in features)
    np.testing.assert_array_equal(features[0][:, frames : 2 * frames], features[0][:, :frames])


def test_resampled_copies_embed_next_to_the_original(model):
    samples, rate = read(CARLO / "vm-goodbye.wav")
    assert rate == 8000
    original = embed(model, decode_speech(wav_bytes(samples, rate)))
    at_16k_copy = _resample(samples, 8000, 16000)
    at_44k_copy = _resample(at_16k_copy, 16000, 44100)
    for copy, copy_rate in ((at_16k_copy, 16000), (at_44k_copy, 44100)):
        copied = embed(model, decode_speech(wav_bytes(copy, copy_rate)))
        assert np.linalg.norm(copied - original) < 0.02
    other = embed(model, decode_speech((ALLISON / "vm-goodbye.wav").read_bytes()))
    assert np.linalg.norm(other - original) > 0.3  # another speaker, same word: far


def test_embeddings_are_unit_vectors_and_same_speaker_is_closer(model):
    carlo = [
        embed(model, decode_speech(p.read_bytes())) for p in sorted(CARLO.glob("vm-*.wav"))[:6]
    ]
    june = ASTERISK_ROOT / "fr_CA_f_June"
    others = [
        embed(model, decode_speech(p.read_bytes())) for p in sorted(june.glob("vm-*.wav"))[:6]
    ]
    assert all(abs(np.linalg.norm(e) - 1) < 1e-5 for e in carlo + others)
    same = [np.linalg.norm(a - b) for i, a in enumerate(carlo) for b in carlo[i + 1 :]]
    different = [np.linalg.norm(a - b) for a in carlo for b in others]
    assert np.mean(same) < np.mean(different)


def test_weights_are_read_without_importing_resemblyzer():
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer is not installed")
    import sys

    from pipeline.embed.speaker_lstm import read_resemblyzer_weights

    sys.modules.pop("resemblyzer", None)
    state, source, sha256 = read_resemblyzer_weights()
    assert "resemblyzer" not in sys.modules
    assert source == "resemblyzer==0.1.4:pretrained.pt"
    assert len(sha256) == 64
    assert state["lstm.weight_ih_l0"].shape == (4 * 256, 40)
    assert state["linear.weight"].shape == (256, 256)


def _resemblyzer_encoder():
    pytest.importorskip("librosa")
    pytest.importorskip("webrtcvad")
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as error:
        pytest.skip(f"resemblyzer not importable: {error}")
    return VoiceEncoder("cpu", verbose=False)


def test_same_windows_reproduce_resemblyzers_embedding(model):
    encoder = _resemblyzer_encoder()
    signal = normalise_volume(trim_silence(at_16k(ALLISON / "vm-intro.wav")))
    expected, _, wav_slices = encoder.embed_utterance(signal, return_partials=True)
    padded = np.pad(signal, (0, max(0, wav_slices[-1].stop - len(signal))))
    mel = mel_power(padded)
    windows = np.stack(
        [mel[:, s.start // 160 : s.start // 160 + PARTIAL_FRAMES] for s in wav_slices]
    )
    ours = embed(model, windows)
    assert float(ours @ expected) > 0.9999


def test_front_end_and_model_agree_with_resemblyzer_on_a_long_clip(model):
    encoder = _resemblyzer_encoder()
    signal = at_16k(ALLISON / "vm-intro.wav")  # 5.7 s of continuous speech
    ours = embed(model, decode_speech(wav_bytes(signal, SAMPLE_RATE)))
    # Resemblyzer on the same voiced, level-normalised samples, with its own windows.
    expected = encoder.embed_utterance(normalise_volume(trim_silence(signal)))
    assert float(ours @ expected) > 0.99


def test_speaker_set_lists_every_voice_once_and_serves_wav():
    from pipeline.data.speakers import iter_speakers, missing_speaker_packages, speaker_packages

    if missing_speaker_packages():
        pytest.skip(f"not installed: {' '.join(missing_speaker_packages())}")
    assert len(speaker_packages()) == 12
    items = list(iter_speakers())
    labels = {item.label for item in items}
    assert len(items) > 9000 and len(labels) == 54  # 10,017 clips with bookworm's packages
    assert {"allison", "carlo", "armelle", "july-es-co", "fillets-cs-small"} <= labels
    assert all(item.group == item.label for item in items)
    assert len({item.id for item in items}) == len(items)
    # One clip of each container (GSM, Ogg Vorbis, Opus, WAV) through the WAV decoder.
    for suffix in (".gsm", ".ogg", ".opus", ".wav"):
        item = next(i for i in items if i.path.suffix == suffix)
        assert decode_speech(item.read_bytes()).shape == SPEECH_SHAPE
