"""Spanish -> English translation on the Tatoeba corpus (../shared/data/spa_eng), Transformer.

    aelab train --config=configs/mt_spa_eng_transformer.py --workdir=runs/mt_transformer
    echo "¿Dónde está la estación?" | aelab translate --workdir=runs/mt_transformer
    aelab train --config=configs/mt_spa_eng_transformer.py:reverse=False --workdir=runs/mt_en_es

The corpus is shuffled with data.split_seed, then 3% is held out for test
(3,568 pairs after the length filter) and 2% of the rest for validation. A joint SentencePiece
vocabulary is trained on the training pairs. Pre-norm Transformer, 2+2
layers of width 256, label smoothing 0.1; the final test translations use
beam search (beam 4, length penalty 0.6) and are scored with sacreBLEU.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, reverse=True, steps=3000)
    config = base_config()
    config.task = "translation"
    config.loss = "cross_entropy"
    config.data.name = "textpairs:../shared/data/spa_eng/spa-eng.zip"
    config.data.reverse = args.reverse  # the file is English<TAB>Spanish: reverse = Spanish -> English
    config.data.test_fraction = 0.03
    config.data.val_fraction = 0.02
    config.model.arch = "transformer"
    config.model.transformer.embed_dim = 256
    config.model.transformer.num_layers = 2
    config.model.transformer.num_heads = 4
    config.model.transformer.mlp_dim = 1024
    config.model.transformer.dropout = 0.1
    config.text.vocab_size = 4000
    config.text.max_length = 48
    config.text.buckets = (12, 24)
    config.text.label_smoothing = 0.1
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 1e-4
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 1000
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_steps = args.steps
    config.train.batch_size = 64
    config.train.eval_batch_size = 250
    config.train.log_every = 200
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    config.decode.beam_size = 4
    config.decode.eval_examples = 500
    return config
