"""WAV bytes -> the encoder's input: a per-clip normalised log-mel spectrogram (1, 64, T).

Every clip becomes the same 4 s of 8 kHz mono (the demo voices are 8 kHz telephony
prompts, nearly all under 4 s), so T is fixed and the encoder needs no masking. The features
are built to ignore recording gain: a louder or quieter copy of a clip, or the same
clip at another sample rate or channel count, maps to (nearly) the same array, which
is what lets a re-recorded query find its original.
"""

import io
import struct

import numpy as np
import soundfile as sf

from pipeline.decode.errors import DecodeError

SAMPLE_RATE = 8000
WINDOW_SECONDS = 4.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
N_FFT = 256  # 32 ms
HOP = 80  # 10 ms
N_MELS = 64
N_FRAMES = 1 + (WINDOW_SAMPLES - N_FFT) // HOP
AUDIO_SHAPE = (1, N_MELS, N_FRAMES)
# Energies more than this far below the clip's loudest mel cell are clamped to that
# floor: digital silence, room noise and zero padding all land on the same value
# instead of on log(tiny), so faint noise cannot swamp the normalisation statistics.
DYNAMIC_RANGE_DB = 40.0
# A digitally silent clip sits entirely on the floor: its spread is rounding noise,
# which must not be blown up to unit scale (it maps to all zeros instead).
_MIN_SPREAD = 1e-3
# Input limits, checked on the header before any sample is read.
MAX_SECONDS = 60.0
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
# ffmpeg and other streaming writers put this in a size field they cannot seek back to.
_UNKNOWN_SIZE = 0xFFFFFFFF


def _mel_filterbank() -> np.ndarray:
    """Triangular filters (N_MELS, N_FFT // 2 + 1), evenly spaced on the HTK mel scale.

    The lowest band starts at 60 Hz: below that the 31 Hz FFT bins are too coarse for
    64 bands (the first filters would cover no bin) and telephone speech carries
    nothing there anyway.
    """

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges_mel = np.linspace(
        hz_to_mel(np.array(60.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2
    )
    edges = mel_to_hz(edges_mel)
    bins = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


_MEL_FILTERS = _mel_filterbank()
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann: exact overlap-add


def decode_audio(data: bytes) -> np.ndarray:
    """Decode a WAV clip to float32 log-mel features of shape AUDIO_SHAPE."""
    samples, rate = _read_wav(data)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = _resample(mono, rate, SAMPLE_RATE)
    window, content = _centre(mono, WINDOW_SAMPLES)
    return _log_mel(window, content)[np.newaxis]


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples and the sample rate, or DecodeError."""
    if not data:
        raise DecodeError("empty audio payload")
    _check_riff(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as wav:
            rate, channels, frames = wav.samplerate, wav.channels, wav.frames
            _check_layout(rate, channels, frames)
            samples = wav.read(dtype="float32", always_2d=True)
    except DecodeError:
        raise
    except Exception as error:
        # libsndfile errors surface as several exception types; all mean "undecodable".
        raise DecodeError(f"unreadable WAV audio ({error})") from None
    if len(samples) == 0:
        raise DecodeError("WAV contains no audio samples")
    if not np.isfinite(samples).all():
        raise DecodeError("WAV contains non-finite (NaN or infinite) samples")
    return samples, rate


def _check_riff(data: bytes) -> None:
    """Demand a RIFF/WAVE file whose data chunk is all there.

    libsndfile quietly returns the frames that are present when a file was cut short,
    so a truncated upload would otherwise be indexed as a shorter, different clip.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DecodeError("not a WAV file (no RIFF/WAVE header)")
    position = 12
    while position + 8 <= len(data):
        chunk_id, declared = struct.unpack_from("<4sI", data, position)
        body = position + 8
        if chunk_id == b"data":
            present = len(data) - body
            if declared != _UNKNOWN_SIZE and declared > present:
                raise DecodeError(
                    f"truncated WAV: data chunk declares {declared} bytes, {present} present"
                )
            return
        position = body + declared + (declared & 1)  # chunks are padded to even sizes
    raise DecodeError("WAV has no data chunk (truncated or malformed)")


def _check_layout(rate: int, channels: int, frames: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DecodeError(f"sample rate {rate} Hz outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DecodeError(f"{channels} channels; 1 to {MAX_CHANNELS} are accepted")
    if frames > MAX_SECONDS * rate:
        raise DecodeError(f"audio lasts {frames / rate:.1f} s; the limit is {MAX_SECONDS:.0f} s")


def _resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by cropping or zero-extending the clip's spectrum.

    The FFT method is an ideal low-pass at the lower Nyquist frequency, so
    downsampling cannot alias, and it needs nothing beyond numpy. It treats the clip
    as periodic; the wrap-around it adds at the ends touches a few ms of (usually
    silent) edge, which the 32 ms STFT frames barely see.
    """
    length = max(1, round(len(signal) * target / rate))
    spectrum = np.fft.rfft(signal)
    kept = spectrum[: length // 2 + 1]
    return (np.fft.irfft(kept, n=length) * (length / len(signal))).astype(np.float32)


def _centre(signal: np.ndarray, length: int) -> tuple[np.ndarray, slice]:
    """Centre-crop or zero-pad to `length`; also the slice that holds real samples."""
    if len(signal) >= length:
        start = (len(signal) - length) // 2
        return signal[start : start + length], slice(0, length)
    start = (length - len(signal)) // 2
    padded = np.zeros(length, dtype=np.float32)
    padded[start : start + len(signal)] = signal
    return padded, slice(start, start + len(signal))


def _log_mel(signal: np.ndarray, content: slice) -> np.ndarray:
    """Log-mel energies standardised over the frames that hold real samples.

    Subtracting the mean log energy removes the gain (a gain is a constant shift in the
    log domain); dividing by the spread gives the encoder unit-scale input. Frames made
    only of zero padding are left out of both statistics: a short clip would otherwise
    be normalised mostly against its padding.
    """
    frames = np.lib.stride_tricks.sliding_window_view(signal, N_FFT)[::HOP] * _WINDOW
    spectrum = np.fft.rfft(frames, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ _MEL_FILTERS.T
    floor = max(float(mel.max()), np.finfo(np.float32).tiny) * 10.0 ** (-DYNAMIC_RANGE_DB / 10.0)
    log_mel = np.log(np.maximum(mel, floor)).T
    first = max(0, (content.start - N_FFT) // HOP + 1)
    last = min(N_FRAMES, (content.stop - 1) // HOP + 1)
    voiced = log_mel[:, first:last]
    spread = max(float(voiced.std()), _MIN_SPREAD)
    return ((log_mel - voiced.mean()) / spread).astype(np.float32)
