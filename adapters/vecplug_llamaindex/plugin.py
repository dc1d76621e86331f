"""The vecplug_llamaindex plugin's hooks (found through the ``vecplug`` entry-point group).

None: ``ModernBertEmbedding`` is used from LlamaIndex code, not from a
vecplug command. The entry point keeps the adapter visible in
``vecplug doctor``'s plugin list; importing it imports neither llama_index
nor torch.
"""
