"""The vecplug_langchain plugin's hooks (found through the ``vecplug`` entry-point group).

None: ``ModernBertEmbeddings`` is used from LangChain code, not from a
vecplug command. The entry point keeps the adapter visible in
``vecplug doctor``'s plugin list; importing it imports neither langchain_core
nor torch.
"""
