"""The functions this folder's task YAMLs name (``!function utils.<name>``); see reguide_tasks.lmms.yaml_functions."""

from reguide_tasks.lmms.yaml_functions import *
