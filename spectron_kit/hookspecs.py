"""Hook specifications: one hook per component kind.

Every hook receives ``register(name, factory, description="")``. Built-in
components are registered through these same hooks (see
``spectron_kit.registry.BUILTIN_MODULES``); a third-party package publishes a
module implementing any of them under the entry point group ``spectron_kit``.

Example plugin module::

    from spectron_kit import hookimpl

    @hookimpl
    def register_vocoders(register):
        register("my-vocoder", MyVocoder, description="what it is")
"""
import pluggy

hookspec = pluggy.HookspecMarker("spectron_kit")
hookimpl = pluggy.HookimplMarker("spectron_kit")


@hookspec
def register_frontends(register):
    """Register audio front ends (waveform -> features, each with a FeatureSpec)."""


@hookspec
def register_encoders(register):
    """Register speech encoders (prompt audio or features -> hidden frames)."""


@hookspec
def register_lms(register):
    """Register decoder language models (causal LMs fed with input embeddings)."""


@hookspec
def register_prenets(register):
    """Register pre-nets (spectrogram frame(s) -> LM embedding)."""


@hookspec
def register_postnets(register):
    """Register post-nets (LM hidden state -> spectrogram frame(s))."""


@hookspec
def register_losses(register):
    """Register training losses and loss composites."""


@hookspec
def register_adapters(register):
    """Register LM adapters (``apply(lm)`` adds trainable weights and freezes the LM's, ``merge(lm)``)."""


@hookspec
def register_vocoders(register):
    """Register vocoders (features -> waveform, each with a FeatureSpec)."""


@hookspec
def register_transcribers(register):
    """Register speech recognisers used to transcribe generated speech."""


@hookspec
def register_speaker_encoders(register):
    """Register speaker encoders (waveform -> speaker embedding)."""


@hookspec
def register_mos_predictors(register):
    """Register predicted-MOS estimators (waveform -> predicted naturalness)."""


@hookspec
def register_lm_scorers(register):
    """Register text-LM scorers (text -> negative log-likelihood)."""


@hookspec
def register_tts(register):
    """Register text-to-speech engines (text -> waveform)."""


@hookspec
def register_scorers(register):
    """Register evaluation metrics (``scorer``): per-utterance values of every condition of a batch."""
