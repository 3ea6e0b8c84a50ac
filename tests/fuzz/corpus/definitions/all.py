__all__ = ['f', 'g', 'Box']
