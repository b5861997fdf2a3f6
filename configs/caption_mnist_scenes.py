"""Image captioning of generated MNIST scenes: 1-3 real digits on a 2x2 grid of a 64x64 canvas,
each scene with three true descriptions ("a seven to the left of a two", "a two to the right of
a seven", "a seven in the top left and a two in the top right").

    aelab train --config=configs/caption_mnist_scenes.py --workdir=runs/caption_scenes
    aelab caption --workdir=runs/caption_scenes --input=IMAGE_OR_DIR
    aelab train --config=configs/caption_mnist_scenes.py:language=es --workdir=runs/caption_scenes_es
    aelab train --config=configs/caption_mnist_scenes.py:arch=rnn --workdir=runs/caption_scenes_rnn

Scenes come from MNIST's training digits (train; validation carved) and its test digits (test:
held-out digits, never seen in training). A convolutional encoder (three stride-2 3x3
convolutions, 64x64 -> an 8x8 grid of features with learned positions) feeds a Transformer
(two self-attention layers over the grid, two decoder layers) or an attention GRU; BPE vocabulary
of 100 pieces; final test captions by beam search (beam 4), scored by sacreBLEU BLEU-4 against
all three references and by exact match.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, language="en", arch="transformer", steps=4000,
                     mnist="idx:../shared/data/mnist")
    config = base_config()
    config.task = "captioning"
    config.loss = "cross_entropy"
    config.data.name = f"digitcaptions:{args.mnist}"
    config.data.scenes.canvas = 64
    config.data.scenes.min_digits = 1
    config.data.scenes.max_digits = 3
    config.data.scenes.num_train = 22000  # 20,000 train + 2,000 validation (carved)
    config.data.scenes.num_test = 2000  # from MNIST's test digits
    config.data.scenes.language = args.language
    config.data.val_fraction = 2000 / 22000
    config.model.arch = args.arch
    config.model.channels = (32, 64, 128)  # image encoder: 64x64 -> 8x8 features
    t = config.model.transformer
    t.embed_dim, t.num_layers, t.num_heads, t.mlp_dim, t.dropout = 128, 2, 4, 256, 0.0
    r = config.model.rnn
    r.embed_dim, r.hidden_dim, r.num_layers, r.dropout = 128, 128, 2, 0.0  # rnn: a GRU state of 128
    config.text.tokenizer = "bpe"
    config.text.vocab_size = 100  # every word one piece (the captions use ~35 words)
    config.text.max_length = 32
    config.text.buckets = ()
    config.text.label_smoothing = 0.0
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 1e-4
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 300
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_steps = args.steps
    config.train.batch_size = 64
    config.train.eval_batch_size = 250
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    config.decode.beam_size = 4
    config.decode.eval_examples = 250
    return config
