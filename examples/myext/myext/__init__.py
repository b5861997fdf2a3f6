"""An example plugin package for aelab: an architecture (patch.py), a penalty and a metric
(wae.py) and a data reader (npydir.py), each registered when its module is imported. A config
names the modules it needs in `config.imports`; nothing in aelab names this package."""
