"""jaxrl.meta: outer loops (evolution strategies, learned objectives, environment design) around whole
training runs. The ES engine and the discover/tune commands arrive with the meta-layer issue."""
