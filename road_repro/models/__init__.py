"""road_repro.models"""
