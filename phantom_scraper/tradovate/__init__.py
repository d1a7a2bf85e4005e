"""tradovate"""
