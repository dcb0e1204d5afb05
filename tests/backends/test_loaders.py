"""The backends load what the zoo builds, with the real libraries, and behave reproducibly."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from viper.backends.clip import ClipScorer
from viper.backends.diffusion import ImageEditor, TextToImage
from viper.backends.embed import Embedder
from viper.zoo.clip import build_tiny_clip
from viper.zoo.diffusion import build_tiny_edit, build_tiny_t2i
from viper.zoo.embed import build_tiny_bge_m3

STEPS, CFG = 2, 5.0


def _build(tmp_path_factory, builder, name: str) -> Path:
    out = tmp_path_factory.mktemp("models") / name
    builder(out, seed=0)
    return out


@pytest.fixture(scope="module")
def t2i(tmp_path_factory) -> TextToImage:
    return TextToImage(str(_build(tmp_path_factory, build_tiny_t2i, "t2i")), revision="local")


@pytest.fixture(scope="module")
def editor(tmp_path_factory) -> ImageEditor:
    return ImageEditor(str(_build(tmp_path_factory, build_tiny_edit, "edit")), revision="local")


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return Embedder(str(_build(tmp_path_factory, build_tiny_bge_m3, "embed")), revision="local")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> ClipScorer:
    return ClipScorer(str(_build(tmp_path_factory, build_tiny_clip, "clip")), revision="local")


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def scene(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    img = Image.new("RGB", size, (170, 210, 240))
    ImageDraw.Draw(img).ellipse((8, 8, size[0] // 2, size[1] // 2), fill=color)
    return img


def test_generate_sizes_and_seeds(t2i):
    imgs = t2i.generate(["a red cat", "a blue car", "a red cat"], [1, 2, 2], STEPS, CFG, height=64, width=48)
    assert [im.size for im in imgs] == [(48, 64)] * 3 and all(im.mode == "RGB" for im in imgs)
    again = t2i.generate(["a red cat"], [1], STEPS, CFG, height=64, width=48)[0]
    # Same prompt and seed in another batch: equal up to float rounding of batched kernels.
    assert np.abs(pixels(imgs[0]) - pixels(again)).max() <= 2
    assert np.array_equal(pixels(again), pixels(t2i.generate(["a red cat"], [1], STEPS, CFG, 64, 48)[0]))
    assert not np.array_equal(pixels(imgs[0]), pixels(imgs[2]))  # same prompt, other seed
    assert not np.array_equal(pixels(imgs[1]), pixels(imgs[2]))  # same seed, other prompt
    assert t2i.generate([], [], STEPS, CFG, 64, 64) == []


def test_reconstruction_batches_do_not_change_items(t2i):
    """A long caption in the batch pads the others' embeddings; each image stays what it is alone."""
    caps = ["a red circle", "the blue square is below the circle " * 30, "a green triangle", "two circles"]
    batch = t2i.generate(caps, [5, 6, 7, 8], STEPS, CFG, 32, 32)
    for i in (0, 2):
        alone = t2i.generate([caps[i]], [5 + 2 * (i // 2)], STEPS, CFG, 32, 32)[0]
        assert np.abs(pixels(batch[i]) - pixels(alone)).max() <= 2


def _tokens(pipe, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=False).input_ids)


def test_long_caption_reaches_the_encoder_past_512_tokens(t2i):
    from viper.backends.diffusion import fit_prompts, max_sequence_length

    pipe = t2i.pipe
    assert max_sequence_length(pipe) == 1024  # diffusers' default is 512
    words = "The small green triangle sits above the yellow square, next to a purple circle. "
    long = words * (1 + 1500 // _tokens(pipe, words))  # about 1500 tokens
    assert _tokens(pipe, long) > 1400
    fitted = fit_prompts(pipe, [long, "a red cat"])
    assert fitted[1] == "a red cat" and long.startswith(fitted[0]) and len(fitted[0]) < len(long)
    # Template + fitted caption is exactly what the pipeline's tokenizer keeps: the template stays whole.
    kept = pipe.tokenizer_max_length + pipe.prompt_template_encode_start_idx
    assert len(pipe.tokenizer(pipe.prompt_template_encode.format(fitted[0])).input_ids) == kept
    emb, _ = pipe.encode_prompt(fitted, max_sequence_length=max_sequence_length(pipe))
    assert emb.shape[1] == 1024


def test_tokens_past_512_change_the_image(t2i):
    """Two captions that share their first ~600 tokens draw different images: the rest reaches the model
    (the text encoder is causal, so with the default 512-token cut they would be identical)."""
    words = "The small green triangle sits above the yellow square, next to a purple circle. "
    head = words * (1 + 600 // _tokens(t2i.pipe, words))
    tails = ["The background is a clear sky. " * 20, "Remove the small black circle. " * 20]
    a, b = t2i.generate([head + t for t in tails], [0, 0], STEPS, CFG, 32, 32)
    assert np.abs(pixels(a) - pixels(b)).max() > 2  # more than the rounding of batched kernels


def test_caption_past_the_budget_is_cut_not_fatal(t2i):
    from viper.backends.diffusion import fit_prompts

    long = "a small red cat sitting on green grass under a bright blue sky " * 200
    img = t2i.generate([long], [0], STEPS, CFG, 32, 32)[0]
    cut = t2i.generate(fit_prompts(t2i.pipe, [long]), [0], STEPS, CFG, 32, 32)[0]
    assert np.array_equal(pixels(img), pixels(cut))  # nothing past the budget reaches the model


def test_generate_rejects_mismatched_lengths(t2i):
    with pytest.raises(ValueError, match="lengths differ"):
        t2i.generate(["a", "b"], [0], STEPS, CFG, 64, 64)


def test_edit_keeps_sizes_and_is_deterministic(editor):
    src = [scene((220, 40, 40)), scene((40, 80, 220), size=(60, 44))]  # 60x44 is not a multiple of 16
    kw = dict(steps=STEPS, guidance_scale=CFG, image_guidance_scale=1.5)
    first = editor.edit(src, ["make it blue", "add a hat"], [3, 4], **kw)
    second = editor.edit(src, ["make it blue", "add a hat"], [3, 4], **kw)
    other = editor.edit(src[:1], ["make it blue"], [5], **kw)
    assert [im.size for im in first] == [(64, 64), (60, 44)]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, second))
    assert not np.array_equal(pixels(first[0]), pixels(other[0]))


def test_edit_batches_do_not_change_items(editor):
    src = [scene(c) for c in ((220, 40, 40), (40, 80, 220), (30, 160, 60), (200, 200, 40))]
    instructions = ["make it blue", "add a hat to the small circle on the left", "remove it", "x"]
    kw = dict(steps=STEPS, guidance_scale=CFG, image_guidance_scale=1.5)
    batch = editor.edit(src, instructions, [1, 2, 3, 4], **kw)
    for i in (1, 2):
        alone = editor.edit([src[i]], [instructions[i]], [i + 1], **kw)[0]
        assert np.abs(pixels(batch[i]) - pixels(alone)).max() <= 2


def test_edit_working_size(editor):
    """The editor works at the input's own size (rounded to 16) or at about `process_pixels` pixels,
    never at Qwen-Image-Edit's fixed 1 MP unless asked, and returns the input's size."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as qie

    from viper.backends.diffusion import working_size

    pipe = editor.pipe
    assert working_size(pipe, (64, 64), None) == (64, 64)
    assert working_size(pipe, (60, 44), None) == (64, 48)
    assert working_size(pipe, (8, 100), None) == (16, 96)
    assert working_size(pipe, (640, 480), 1024 * 1024) == (1184, 896)  # the pipeline's own choice
    assert working_size(pipe, (64, 64), 32 * 32) == (32, 32)
    seen = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *a, **k: seen.append(tuple(x.shape[-2:])) or encode(x, *a, **k)
    try:
        out = editor.edit([scene((220, 40, 40), size=(60, 44))], ["make it blue"], [0], STEPS, CFG, 1.5)[0]
        small = editor.edit([scene((220, 40, 40))], ["make it blue"], [0], STEPS, CFG, 1.5,
                            process_pixels=32 * 32)[0]
    finally:
        pipe.vae.encode = encode
    assert seen == [(48, 64), (32, 32)] and out.size == (60, 44) and small.size == (64, 64)
    assert qie.calculate_dimensions(1024 * 1024, 1.0) == (1024, 1024, None)  # restored after the calls


def test_embeddings_unit_norm_and_spread(embedder):
    texts = ["a red cat on the grass", "a blue car in a city street", "two dogs playing with a ball",
             "the night sky is full of stars", "an empty kitchen table"]
    vecs = embedder.encode(texts)
    assert vecs.shape == (5, embedder.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (vecs @ vecs.T)[np.triu_indices(5, 1)]
    assert cos.max() - cos.min() > 0.05
    np.testing.assert_allclose(embedder.encode(texts[:1])[0], vecs[0], atol=1e-5)  # batch-independent
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_clip_similarity(clip):
    red, blue = scene((220, 40, 40)), scene((40, 80, 220))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    emb = clip.image_embeddings([red, blue, noise])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    same = clip.image_similarity([red, noise], [red.copy(), noise.copy()])
    diff = clip.image_similarity([red, red], [blue, noise])
    np.testing.assert_allclose(same, 1.0, atol=1e-5)
    assert (diff < same - 1e-3).all()


@pytest.mark.parametrize("cls", [TextToImage, ImageEditor, Embedder, ClipScorer])
def test_missing_model_names_path_and_fix(cls, tmp_path):
    missing = str(tmp_path / "not-built")
    with pytest.raises(RuntimeError, match="dvc repro models") as err:
        cls(missing, revision="local")
    assert missing in str(err.value)


def test_guidance_kwargs_follow_the_pipeline_signature(t2i, editor):
    from viper.backends.diffusion import guidance_kwargs, max_sequence_length

    for pipe in (t2i.pipe, editor.pipe):  # Qwen-Image(-Edit): true CFG, which needs a negative prompt
        assert guidance_kwargs(pipe, 2, 5.0, 1.5) == {"true_cfg_scale": 5.0, "negative_prompt": [" ", " "]}
        assert guidance_kwargs(pipe, 2, 1.0, 1.5) == {"true_cfg_scale": 1.0}  # no CFG: no negative prompt
        assert max_sequence_length(pipe) == 1024

    class Pix2PixLike:  # an editor with image guidance and no true CFG
        def __call__(self, prompt=None, image=None, guidance_scale=7.5, image_guidance_scale=1.5):
            return None

    assert guidance_kwargs(Pix2PixLike(), 2, 4.0, 1.5) == {"guidance_scale": 4.0, "image_guidance_scale": 1.5}
    assert max_sequence_length(Pix2PixLike()) is None
