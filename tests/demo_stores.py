"""How many databases `vecplug demo` fills here: one per installed adapter that offers a demo store."""


def demo_store_count(with_dsn: bool) -> int:
    """Every installed demo store; PostgreSQL's answers only when the demo is given a --dsn."""
    import vecplug

    vecplug.load_plugins()
    return sum(with_dsn or implementation.plugin_name != "pgvector"
               for implementation in vecplug.pm.hook.vecplug_demo_store.get_hookimpls())
