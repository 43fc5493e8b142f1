"""Where vectors live: the store interface, the collection spec, engine config and factory, layouts, copies; one sub-package per engine."""
