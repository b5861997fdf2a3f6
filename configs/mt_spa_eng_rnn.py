"""Spanish -> English translation on the Tatoeba corpus (../shared/data/spa_eng), attention RNN.

    aelab train --config=configs/mt_spa_eng_rnn.py --workdir=runs/mt_rnn
    aelab train --config=configs/mt_spa_eng_rnn.py:cell=lstm,attention=dot --workdir=runs/mt_lstm_dot

Bidirectional GRU encoder, GRU decoder with additive (Bahdanau) attention,
same data, splits and tokenizer settings as configs/mt_spa_eng_transformer.py.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, reverse=True, cell="gru", attention="additive", steps=3300)
    config = base_config()
    config.task = "translation"
    config.loss = "cross_entropy"
    config.data.name = "textpairs:../shared/data/spa_eng/spa-eng.zip"
    config.data.reverse = args.reverse
    config.data.test_fraction = 0.03
    config.data.val_fraction = 0.02
    config.model.arch = "rnn"
    r = config.model.rnn
    r.cell, r.attention = args.cell, args.attention
    r.embed_dim, r.hidden_dim, r.num_layers, r.dropout = 256, 256, 1, 0.1
    config.text.vocab_size = 4000
    config.text.max_length = 48
    config.text.buckets = (12, 24)
    config.text.label_smoothing = 0.1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 500
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.eval_batch_size = 250
    config.train.log_every = 200
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    config.decode.beam_size = 4
    config.decode.eval_examples = 500
    return config
